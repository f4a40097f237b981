//! The principal named by a client certificate: its subject as a
//! distinguished name in RFC 2253 order (last RDN first), as Kafka's
//! default `ssl.principal.mapping.rules` gives it (`CN=alice,O=Example`).
//!
//! A small DER walk over the certificate, no allocation of the parsed
//! tree; any malformed input is `None`.
//!
//! ## Format
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! OPTIONAL, serialNumber INTEGER, signature SEQUENCE, issuer Name,
//! validity SEQUENCE, subject Name, ... }, ... }`; `Name ::= SEQUENCE OF
//! SET OF SEQUENCE { type OID, value ANY }`.

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject of a DER certificate as `CN=…,O=…`; `None` if malformed.
pub fn subject_name(cert_der: &[u8]) -> Option<String> {
    let (0x30, cert, _) = element(cert_der)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    for _ in 0..4 {
        // serial, signature, issuer, validity
        rest = element(rest)?.2;
    }
    let (0x30, mut name, _) = element(rest)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (0x31, mut set, next) = element(name)? else {
            return None;
        };
        name = next;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (0x30, atv, next) = element(set)? else {
                return None;
            };
            set = next;
            let (0x06, oid, value) = element(atv)? else {
                return None;
            };
            let (_, value, _) = element(value)?;
            let value = String::from_utf8_lossy(value);
            parts.push(format!("{}={}", attribute_name(oid), escape(&value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253's names for common attributes, else the dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() && i < oid.len() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made by rcgen: its subject, last RDN first.
    #[test]
    fn subject_of_a_real_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_name(cert.der()).as_deref(),
            Some("CN=client-1,O=Example\\, Inc.,C=DE")
        );
        // Cut short anywhere: None, never a panic.
        for n in 0..cert.der().len() {
            let _ = subject_name(&cert.der()[..n]);
        }
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_name(b""), None);
        assert_eq!(subject_name(&[0x30, 0x82, 0xff]), None);
        assert_eq!(subject_name(&[0x30, 0x00]), None);
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(escape("a,b"), "a\\,b");
    }
}
