"""xenstack.testing"""
