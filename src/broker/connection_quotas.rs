//! How many connections the broker serves at once (Kafka's
//! `ConnectionQuotas`): `max.connections` in all and
//! `max.connections.per.ip` from one client address, except where
//! `max.connections.per.ip.overrides` names the address.
//!
//! Owns: the counts and the [`Slot`] a served connection holds (given back
//! when it drops, however the connection ends). A connection over either
//! limit is refused as soon as it is accepted: the caller closes it before
//! reading a byte. (Kafka closes a connection over `max.connections.per.ip`
//! the same way, but stops accepting while at `max.connections`; tierlog
//! closes that one too, so a flood never fills the accept backlog and
//! clients see a closed connection at once and retry with backoff.)
//! Must never block or wait: the accept loop asks it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// The broker's connection counts and limits.
#[derive(Debug)]
pub(crate) struct ConnectionQuotas {
    max: usize,
    max_per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the broker already serves max.connections ({limit}) connections")]
    Broker { limit: usize },
    #[error("this address already holds max.connections.per.ip ({limit}) connections")]
    Ip { limit: usize },
}

/// One served connection's place in the counts; given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl ConnectionQuotas {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionQuotas {
            max,
            max_per_ip,
            overrides: HashMap::new(),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// The same limits, with per-address exceptions.
    pub fn with_overrides(self: Arc<Self>, overrides: HashMap<IpAddr, usize>) -> Arc<Self> {
        Arc::new(ConnectionQuotas {
            max: self.max,
            max_per_ip: self.max_per_ip,
            overrides,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A slot for a connection from `ip`, or why it must be closed.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.max {
            return Err(Refused::Broker { limit: self.max });
        }
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.max_per_ip);
        let from_ip = counts.per_ip.entry(ip).or_default();
        if *from_ip >= limit {
            return Err(Refused::Ip { limit });
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(Slot {
            quotas: Arc::clone(self),
            ip,
        })
    }

    /// Connections served now.
    #[cfg(test)]
    pub fn served(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.quotas.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_in_all_and_per_address_and_slots_come_back() {
        let q = ConnectionQuotas::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = q.try_acquire(a).unwrap();
        let _a2 = q.try_acquire(a).unwrap();
        assert_eq!(q.try_acquire(a).unwrap_err(), Refused::Ip { limit: 2 });
        let _b1 = q.try_acquire(b).unwrap();
        assert_eq!(q.try_acquire(b).unwrap_err(), Refused::Broker { limit: 3 });
        assert_eq!(q.served(), 3);
        drop(a1);
        assert_eq!(q.served(), 2);
        let _a3 = q.try_acquire(a).unwrap();
        assert_eq!(q.served(), 3);
        // A refusal takes nothing.
        assert!(q.try_acquire(b).is_err());
        assert_eq!(q.served(), 3);
        assert!(lock(&q.counts).per_ip.len() == 2);
    }

    #[test]
    fn an_override_raises_or_lowers_one_address_only() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let q = ConnectionQuotas::new(100, 2).with_overrides([(a, 4), (b, 0)].into());
        let held: Vec<_> = (0..4).map(|_| q.try_acquire(a).unwrap()).collect();
        assert_eq!(q.try_acquire(a).unwrap_err(), Refused::Ip { limit: 4 });
        assert_eq!(q.try_acquire(b).unwrap_err(), Refused::Ip { limit: 0 });
        let _c: Vec<_> = (0..2).map(|_| q.try_acquire(c).unwrap()).collect();
        assert_eq!(q.try_acquire(c).unwrap_err(), Refused::Ip { limit: 2 });
        drop(held);
    }
}
