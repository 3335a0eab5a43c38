class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried without a tenant. A programming error, never a 404."""
