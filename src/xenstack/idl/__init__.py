"""xenstack.idl"""
