//! Users of the stub: client certificates and kubeconfigs (`causeway user add`), the
//! records behind them (`users.yaml`, `revoked.yaml` in the state directory), static
//! bearer tokens (a kube-apiserver style `--token-auth-file`), and [`UserStore`], the
//! snapshot [`crate::authn`] checks requests against.
//!
//! - [`records`]: the user records; add, list and remove users, issue their tokens.
//! - [`kubeconfig`]: the kubeconfig a new user gets.
//! - [`token_file`]: static bearer tokens from a CSV file.
//! - [`store`]: [`UserStore`] and [`UserStoreHandle`], which reloads it when the files
//!   change ([`UserStoreHandle::watch`] polls them), so a removed user is refused within
//!   seconds.

pub mod kubeconfig;
pub mod records;
pub mod store;
pub mod token_file;

pub use kubeconfig::kubeconfig_yaml;
pub use records::{
    AddedUser, CertRecord, NewUser, REVOKED_FILE, RevokedCert, SCHEDULER_CERT_TTL, SCHEDULER_GROUP,
    SCHEDULER_USER, TokenRecord, USER_TOKEN_PREFIX, USERS_FILE, UserRecord, UsersError, add_user,
    contexts_for, issue_user_token, list_users, remove_user, scheduler_identity,
};
pub use store::{UserStore, UserStoreHandle};
pub use token_file::{StaticToken, TokenFileError, parse_token_file, read_token_file};

#[cfg(test)]
mod tests;
