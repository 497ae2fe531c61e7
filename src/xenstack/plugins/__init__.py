"""xenstack.plugins"""
