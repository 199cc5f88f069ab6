//! Roles. A token carries exactly one; every private route states which it accepts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The role a user chooses when registering an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// Buys forward contracts for proving capacity.
    Buyer,
    /// Sells proving capacity and bonds stake.
    Prover,
}

/// The role carried by an access token: an account's role, or the exchange operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A buyer account.
    Buyer,
    /// A prover account.
    Prover,
    /// The operator of the exchange (holder of `PCX_ADMIN_API_KEY`).
    Admin,
}

impl Role {
    /// The stable lowercase name used in tokens, the database and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Prover => "prover",
            Role::Admin => "admin",
        }
    }
}

impl From<AccountRole> for Role {
    fn from(role: AccountRole) -> Self {
        match role {
            AccountRole::Buyer => Role::Buyer,
            AccountRole::Prover => Role::Prover,
        }
    }
}

impl AccountRole {
    /// The stable lowercase name used in the database.
    pub fn as_str(self) -> &'static str {
        Role::from(self).as_str()
    }

    /// Parses the stored name back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buyer" => Some(AccountRole::Buyer),
            "prover" => Some(AccountRole::Prover),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
