"""xenstack.cli"""
