"""Fixtures shared by the accounts and imaging tests (this folder is on sys.path for portal_own_urls)."""
