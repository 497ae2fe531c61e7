"""xenstack.rpc"""
