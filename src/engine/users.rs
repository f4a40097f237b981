//! The engine methods through which the broker reaches the SCRAM
//! credentials in the catalog (SASL authentication, the
//! Alter/DescribeUserScramCredentials APIs): each forwards to the catalog
//! under the engine's catalog lock, one catalog transaction each.

use crate::error::Result;
use crate::security::{ScramCredential, ScramMechanism};
use crate::sync::lock;

impl super::Engine {
    /// Store (or replace) a user's credential for its mechanism.
    pub fn upsert_scram_credential(&self, credential: &ScramCredential) -> Result<()> {
        let now = self.now_ms();
        lock(self.catalog()).upsert_scram_credential(credential, now)
    }

    /// Remove a user's credential for `mechanism`; whether it existed.
    pub fn delete_scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Result<bool> {
        lock(self.catalog()).delete_scram_credential(user, mechanism)
    }

    /// Credentials of `user`, or of everyone with `None`.
    pub fn scram_credentials(&self, user: Option<&str>) -> Result<Vec<ScramCredential>> {
        lock(self.catalog()).scram_credentials(user)
    }
}
