"""xenstack.net"""
