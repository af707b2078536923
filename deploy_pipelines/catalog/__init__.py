from deploy_pipelines.catalog.loader import CatalogError, default_catalog_path, load_catalog, parse_catalog
from deploy_pipelines.catalog.models import Catalog, EnvRef, Service, Target

__all__ = ["Catalog", "CatalogError", "EnvRef", "Service", "Target", "default_catalog_path", "load_catalog",
           "parse_catalog"]
