//! The engine methods through which the broker reaches the client quotas
//! in the catalog (AlterClientQuotas, DescribeClientQuotas, and the
//! broker's quota cache at start): each forwards to the catalog under the
//! engine's catalog lock, one catalog transaction each.

use crate::catalog::quotas::{ClientQuota, QuotaChange};
use crate::error::Result;
use crate::sync::lock;

impl super::Engine {
    /// Set or remove quota keys of entities, in one transaction.
    pub fn alter_client_quotas(&self, changes: &[QuotaChange]) -> Result<()> {
        let now = self.now_ms();
        lock(self.catalog()).alter_client_quotas(changes, now)
    }

    /// Every stored client quota.
    pub fn client_quotas(&self) -> Result<Vec<ClientQuota>> {
        lock(self.catalog()).client_quotas()
    }
}
