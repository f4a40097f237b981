//! The engine's ACL bindings: the catalog's `acls` table and the copy in
//! memory the broker authorizes every request against. A change goes to
//! the catalog first (one transaction), then the copy is replaced whole
//! under the catalog lock, so readers never see a half-applied change and
//! the copy never holds a binding the catalog does not.

use std::sync::Arc;

use crate::error::Result;
use crate::security::acl::{AclBinding, AclFilter};
use crate::sync::lock;

impl super::Engine {
    /// Every ACL binding (cheap: a shared, immutable copy).
    pub fn acls(&self) -> Arc<Vec<AclBinding>> {
        Arc::clone(&self.acls.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Store bindings (one already stored is kept once).
    pub fn create_acls(&self, bindings: &[AclBinding]) -> Result<()> {
        let now = self.now_ms();
        let mut catalog = lock(self.catalog());
        catalog.create_acls(bindings, now)?;
        let all = catalog.acls()?;
        *self.acls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(all);
        Ok(())
    }

    /// Remove every binding each filter matches; per filter, the bindings
    /// it removed.
    pub fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>> {
        let mut catalog = lock(self.catalog());
        let current = catalog.acls()?;
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| current.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let mut gone: Vec<AclBinding> = matched.iter().flatten().cloned().collect();
        gone.sort();
        gone.dedup();
        catalog.delete_acls(&gone)?;
        let all = catalog.acls()?;
        *self.acls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(all);
        Ok(matched)
    }
}
