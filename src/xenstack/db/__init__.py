"""xenstack.db"""
