from deploy_pipelines.catalog.loader import (CatalogError, catalog_digest, default_catalog_path, load_catalog,
                                             parse_catalog, read_catalog_bytes)
from deploy_pipelines.catalog.models import Catalog, EnvRef, Service, Target

__all__ = ["Catalog", "CatalogError", "EnvRef", "Service", "Target", "catalog_digest", "default_catalog_path",
           "load_catalog", "parse_catalog", "read_catalog_bytes"]
