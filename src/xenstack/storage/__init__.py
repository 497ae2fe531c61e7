"""xenstack.storage"""
