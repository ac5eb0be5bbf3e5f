//! `${{ services.NAME.FIELD }}` in a service's `env:` values: the address of
//! another service of the environment, resolved when an instance starts (the
//! router's address is known only then: `listen: 127.0.0.1:0` binds any port).
//!
//! Only these references are allowed in hangar.yml; the full expression
//! language belongs to workflows, where contexts exist to evaluate it over.

/// The fields a reference may name, in the order the docs list them.
pub const SERVICE_FIELDS: &[&str] = &["host", "port", "url"];

/// One `${{ services.NAME.FIELD }}` found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Byte range of the whole `${{ … }}` in the value.
    pub range: std::ops::Range<usize>,
    pub service: String,
    pub field: String,
}

/// Every reference in `value`, in order, or what is wrong with the first
/// one that is not a service reference (an unclosed `${{`, another context).
pub fn service_refs(value: &str) -> Result<Vec<ServiceRef>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = value[from..].find("${{") {
        let start = from + at;
        let inner_start = start + 3;
        let Some(len) = value[inner_start..].find("}}") else {
            return Err(format!(
                "`{}` opens `${{{{` without a closing `}}}}`",
                &value[start..]
            ));
        };
        let inner = value[inner_start..inner_start + len].trim();
        let end = inner_start + len + 2;
        let parts: Vec<&str> = inner.split('.').collect();
        match parts.as_slice() {
            ["services", service, field] if !service.is_empty() && !field.is_empty() => {
                out.push(ServiceRef {
                    range: start..end,
                    service: service.to_string(),
                    field: field.to_string(),
                });
            }
            _ => {
                return Err(format!(
                    "`${{{{ {inner} }}}}` is not a service address: hangar.yml's `env:` values may use only `${{{{ services.NAME.host }}}}`, `.port` or `.url`"
                ));
            }
        }
        from = end;
    }
    Ok(out)
}

/// `value` with each reference replaced by `lookup(service, field)`; a
/// reference `lookup` has no answer for is an error naming it.
pub fn resolve(
    value: &str,
    mut lookup: impl FnMut(&str, &str) -> Result<String, String>,
) -> Result<String, String> {
    let refs = service_refs(value)?;
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&value[last..r.range.start]);
        out.push_str(&lookup(&r.service, &r.field)?);
        last = r.range.end;
    }
    out.push_str(&value[last..]);
    Ok(out)
}

/// `host`, `port` or `url` of a service whose router listens on `listen`
/// (`tcp`: a `protocol: tcp` service, whose URL is `tcp://…`): the one
/// spelling of an address, for the controller (instances' `env:`) and for
/// `backup:` commands alike. A router on every interface is reached on
/// loopback from this machine.
pub fn address_field(
    listen: std::net::SocketAddr,
    tcp: bool,
    field: &str,
) -> Result<String, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tcp { "tcp" } else { "http" };
    match field {
        "host" => Ok(ip.to_string()),
        "port" => Ok(listen.port().to_string()),
        "url" => Ok(format!(
            "{scheme}://{}",
            std::net::SocketAddr::new(ip, listen.port())
        )),
        other => Err(format!(
            "`{other}` is not a field of a service (use host, port or url)"
        )),
    }
}

/// The variable-name part for a service: `my-db` → `MY_DB`
/// (`HANGAR_SERVICE_MY_DB_URL`).
pub fn env_name(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_replaced_with_the_rest_kept() {
        let v = "postgres://app@${{ services.db.host }}:${{services.db.port}}/app";
        let refs = service_refs(v).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(
            (refs[1].service.as_str(), refs[1].field.as_str()),
            ("db", "port")
        );
        let out = resolve(v, |s, f| Ok(format!("<{s}.{f}>"))).unwrap();
        assert_eq!(out, "postgres://app@<db.host>:<db.port>/app");
        assert_eq!(resolve("plain", |_, _| Err("no".into())).unwrap(), "plain");
    }

    #[test]
    fn anything_else_is_refused_with_what_is_allowed() {
        let e = service_refs("${{ secrets.X }}").unwrap_err();
        assert!(e.contains("services.NAME.host"), "{e}");
        assert!(
            service_refs("${{ services.db")
                .unwrap_err()
                .contains("closing")
        );
        assert_eq!(env_name("my-db.2"), "MY_DB_2");
    }

    #[test]
    fn an_address_on_every_interface_is_reached_on_loopback() {
        let any: std::net::SocketAddr = "0.0.0.0:5432".parse().unwrap();
        assert_eq!(
            address_field(any, true, "url").unwrap(),
            "tcp://127.0.0.1:5432"
        );
        assert_eq!(address_field(any, false, "host").unwrap(), "127.0.0.1");
        let v6: std::net::SocketAddr = "[::]:80".parse().unwrap();
        assert_eq!(address_field(v6, false, "url").unwrap(), "http://[::1]:80");
        assert!(
            address_field(any, false, "path")
                .unwrap_err()
                .contains("host, port or url")
        );
    }
}
