"""xenstack.impl"""
