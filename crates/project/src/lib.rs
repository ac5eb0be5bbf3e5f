//! hangar.yml: services, environments, release and scan settings, with source positions.
