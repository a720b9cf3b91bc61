"""TODO(helper)"""
