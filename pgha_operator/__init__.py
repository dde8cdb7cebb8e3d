"""pgha-operator: keeps a Patroni + etcd + HAProxy PostgreSQL cluster converged with YAML manifests."""

__version__ = "0.1.0"
