//! The remote tier: an `object_store::ObjectStore` (file:// or s3://),
//! the object key layout, the uploader, and fault injection for tests.
//!
//! Owns: every byte in the bucket. Must never delete local data (retention
//! in `tasks/` decides that, after a copy is `COPY_FINISHED`).

pub mod admin;
pub(crate) mod cache;
pub mod catalog_snapshot;
pub mod check;
pub mod faults;
pub mod fetcher;
pub mod keys;
pub mod profile;
pub mod quota;
pub mod read_ahead;
pub mod restore;
pub mod staging;
pub(crate) mod store;
pub mod uploader;

pub use store::RemoteStore;
