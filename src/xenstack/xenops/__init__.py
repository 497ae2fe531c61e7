"""xenstack.xenops"""
