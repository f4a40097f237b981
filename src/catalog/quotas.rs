//! Client quotas as the catalog stores them (KIP-13, KIP-55, KIP-124,
//! KIP-546): an entity (a user, a client id, or both; each part named or
//! Kafka's `<default>`), a quota key and its value. The broker's quota
//! manager (`broker/quota_manager.rs`) resolves them; this file only names
//! them and checks a key's value.

use std::fmt;

/// One part of a quota entity: a name, or Kafka's `<default>` (a `null`
/// entity name on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityName {
    Default,
    Name(String),
}

impl EntityName {
    /// From the wire: `None` is the default.
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Name(n.to_string()),
        }
    }

    /// To the wire: the default is `None`.
    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Name(n) => Some(n),
        }
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityName::Default => f.write_str("<default>"),
            EntityName::Name(n) => f.write_str(n),
        }
    }
}

/// Who a quota applies to (KIP-55): a user, a client id, or a user's
/// client id. At least one part is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        if let Some(c) = &self.client_id {
            parts.push(format!("client-id={c}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// The quota keys tierlog enforces, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKey {
    /// Produced bytes per second (request sizes).
    ProducerByteRate,
    /// Fetched bytes per second (response sizes).
    ConsumerByteRate,
    /// Request handling time, in percent of one thread (KIP-124).
    RequestPercentage,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
        }
    }

    pub fn parse(s: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Index into per-key tables (`ALL` order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether `value` is acceptable for this key: positive and finite;
    /// byte rates whole numbers (Kafka's are LONG configs).
    pub fn check(self, value: f64) -> std::result::Result<(), String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!(
                "{} must be a number greater than 0, got {value}",
                self.name()
            ));
        }
        if self != QuotaKey::RequestPercentage && (value.fract() != 0.0 || value > i64::MAX as f64)
        {
            return Err(format!(
                "{} must be a whole number of bytes per second, got {value}",
                self.name()
            ));
        }
        Ok(())
    }
}

/// One stored quota.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub key: QuotaKey,
    pub value: f64,
}

/// One change: set `key` of the entity to the value, or remove it (`None`).
pub type QuotaChange = (QuotaEntity, QuotaKey, Option<f64>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        for k in QuotaKey::ALL {
            assert_eq!(QuotaKey::parse(k.name()), Some(k));
        }
        assert_eq!(QuotaKey::parse("controller_mutation_rate"), None);
        assert!(QuotaKey::ProducerByteRate.check(1024.0).is_ok());
        assert!(QuotaKey::ProducerByteRate.check(10.5).is_err());
        assert!(QuotaKey::ConsumerByteRate.check(0.0).is_err());
        assert!(QuotaKey::RequestPercentage.check(12.5).is_ok());
        assert!(QuotaKey::RequestPercentage.check(-1.0).is_err());
        assert!(QuotaKey::RequestPercentage.check(f64::NAN).is_err());
        let e = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: Some(EntityName::Default),
        };
        assert_eq!(e.to_string(), "user=alice client-id=<default>");
    }
}
