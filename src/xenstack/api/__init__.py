"""xenstack.api"""
