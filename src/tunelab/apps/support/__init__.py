"""The customer-service bot (issue 10): so far its knowledge base, see ``knowledge``."""
