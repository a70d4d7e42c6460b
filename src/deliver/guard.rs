//! Where webhooks may go: the subscriber URL policy.
//!
//! A subscriber URL is operator-written, but a webhook daemon is a classic
//! server-side request forgery vector: a URL (or a DNS answer) pointing at a
//! cloud metadata service or a link-local address would hand out whatever
//! lives there. So, unless `[delivery] allow_link_local = true`:
//! - at config load, a URL whose host is such an address literal is refused,
//!   and a host outside `[delivery] allowed_hosts` (when set) is refused;
//! - at connect time, [`GuardedResolver`] resolves the host and drops every
//!   blocked address, so a name that resolves (or later re-resolves) to one
//!   is never connected to. IP literals never reach a resolver, which is
//!   why they are checked at load.
//!
//! Redirects are never followed (the client's policy is `none`; a 3xx is a
//! permanent failure), so a receiver cannot bounce a request elsewhere.

use std::net::{IpAddr, SocketAddr};

/// Link-local and metadata ranges: 169.254.0.0/16 (IPv4 link-local; the
/// AWS/GCP/Azure metadata address 169.254.169.254), fe80::/10 (IPv6
/// link-local) and fd00::/8 (unique-local; AWS's fd00:ec2::254).
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 169 && v4.octets()[1] == 254,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_blocked(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            (first & 0xffc0) == 0xfe80 || (first & 0xff00) == 0xfd00
        }
    }
}

/// The load-time check of one subscriber URL.
pub fn check_url(
    url: &reqwest::Url,
    allowed_hosts: &[globset::GlobMatcher],
    allow_link_local: bool,
) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err("subscriber url has no host".to_string());
    };
    let host = host.to_ascii_lowercase();
    if !allowed_hosts.is_empty() && !allowed_hosts.iter().any(|g| g.is_match(&host)) {
        return Err(format!("host `{host}` is not in [delivery] allowed_hosts"));
    }
    // IPv6 literals come bracketed.
    let literal: Option<IpAddr> = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    if let Some(ip) = literal.filter(|ip| !allow_link_local && is_blocked(*ip)) {
        return Err(format!(
            "address {ip} is link-local or a cloud metadata address; webhooks are not sent there"
        ));
    }
    Ok(())
}

/// A DNS resolver that never returns a blocked address (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_link_local: bool,
}

/// Keeps the addresses a connection may use; an error when none is left.
pub fn filter_addrs(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow_link_local: bool,
) -> Result<Vec<SocketAddr>, String> {
    if allow_link_local {
        return Ok(addrs);
    }
    let (blocked, ok): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| is_blocked(a.ip()));
    if ok.is_empty() && !blocked.is_empty() {
        let list: Vec<String> = blocked.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!(
            "{host} resolves only to link-local or metadata addresses ({}); refused (see [delivery] allow_link_local)",
            list.join(", ")
        ));
    }
    if !blocked.is_empty() {
        tracing::warn!(
            host,
            blocked = blocked.len(),
            "link-local or metadata addresses in a DNS answer were skipped"
        );
    }
    Ok(ok)
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_link_local;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            match filter_addrs(&host, addrs, allow) {
                Ok(ok) => Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs),
                Err(why) => {
                    tracing::warn!(host = %host, "{why}");
                    Err(why.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_ranges() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_blocked(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fc00::1",
            "2001:db8::1",
            "169.253.1.1",
        ] {
            assert!(!is_blocked(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn load_time_check() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        let allow = [globset::Glob::new("*.example.org")
            .expect("glob")
            .compile_matcher()];
        assert!(check_url(&url("http://169.254.169.254/latest"), &[], false).is_err());
        assert!(check_url(&url("http://[fd00:ec2::254]/"), &[], false).is_err());
        assert!(check_url(&url("http://169.254.169.254/"), &[], true).is_ok());
        assert!(check_url(&url("https://hooks.example.org/x"), &allow, false).is_ok());
        let e = check_url(&url("https://evil.example.com/x"), &allow, false).expect_err("refused");
        assert!(e.contains("evil.example.com"), "{e}");
    }

    #[test]
    fn resolution_drops_blocked_answers() {
        let a = |s: &str| -> SocketAddr { s.parse().expect("addr") };
        let mixed = vec![a("169.254.169.254:0"), a("127.0.0.1:0")];
        assert_eq!(
            filter_addrs("h", mixed, false).expect("one left"),
            vec![a("127.0.0.1:0")]
        );
        let only = vec![a("169.254.169.254:0")];
        let e = filter_addrs("meta.test", only.clone(), false).expect_err("refused");
        assert!(e.contains("meta.test") && e.contains("169.254.169.254"), "{e}");
        assert_eq!(filter_addrs("h", only, true).expect("allowed").len(), 1);
    }
}
