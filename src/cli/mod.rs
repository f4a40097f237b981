//! Subcommands of the `tierlog` binary.

pub mod acl;
pub mod admin;
pub mod client_security;
pub mod inspect;
pub mod perf;
pub mod quota;
pub mod restore;
pub mod scrape;
pub mod serve;
pub mod tier;
pub mod transactions;
pub mod user;

/// Parse a byte size: a number with an optional `K`, `M`, `G` (×1000) or
/// `KiB`, `MiB`, `GiB` (×1024) suffix, e.g. `512MiB`, `1G`, `16384`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 1048576, 512MiB, 1GiB, 10M)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (use K, M, G, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("16384"), Ok(16384));
        assert_eq!(super::parse_size("16KiB"), Ok(16384));
        assert_eq!(super::parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(super::parse_size("10M"), Ok(10_000_000));
        assert!(super::parse_size("ten").is_err());
        assert!(super::parse_size("5XB").is_err());
    }
}
