//! A CycloneDX 1.5 SBOM (JSON) of the packages the lock files pin: one
//! `library` component per distinct package URL, with the lock file that
//! pins it. Written here: the document is a dozen fields, and the
//! `cyclonedx-bom` crate brings a model of the whole specification.

use serde_json::{Value, json};

use crate::{Ecosystem, Package};

/// The package URL (purl spec) of a pinned package.
pub fn purl(p: &Package) -> Option<String> {
    let version = p.version.as_deref()?;
    let enc = |s: &str| s.replace('@', "%40");
    Some(match p.ecosystem {
        Ecosystem::CratesIo => format!("pkg:cargo/{}@{version}", p.name),
        Ecosystem::Npm => format!("pkg:npm/{}@{version}", enc(&p.name)),
        // purl's pypi names are PEP 503-normalised with `-`, lower case.
        Ecosystem::PyPI => format!("pkg:pypi/{}@{version}", Ecosystem::PyPI.normalize(&p.name)),
        Ecosystem::Go => format!("pkg:golang/{}@{version}", p.name),
        // purl: maven's namespace is the group id, composer's the vendor.
        Ecosystem::Maven => format!("pkg:maven/{}@{version}", p.name.replacen(':', "/", 1)),
        Ecosystem::Packagist => format!("pkg:composer/{}@{version}", p.name),
        Ecosystem::RubyGems => format!("pkg:gem/{}@{version}", p.name),
    })
}

pub fn cyclonedx(packages: &[Package], tool_version: &str) -> Value {
    let mut seen = std::collections::HashSet::new();
    let mut components = Vec::new();
    for p in packages {
        let Some(purl) = purl(p) else { continue };
        if !seen.insert(purl.clone()) {
            continue;
        }
        components.push(json!({
            "type": "library",
            "bom-ref": purl,
            "name": p.name,
            "version": p.version,
            "purl": purl,
            "properties": [{"name": "hangar:lockfile", "value": format!("{}:{}", p.file.display(), p.line)}],
        }));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {"tools": {"components": [{"type": "application", "name": "hangar", "version": tool_version}]}},
        "components": components,
    })
}
