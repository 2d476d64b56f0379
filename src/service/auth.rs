//! Who is calling, and what they may do: every authorization decision of
//! the API is made here, from the [`Caller`] the request authenticated as.
//!
//! | caller | may |
//! |---|---|
//! | anyone | read products, follow their stock |
//! | customer (`sub` = its customer id) | register itself; its own customer record, accounts, orders and their subscriptions; open accounts, move money and place or cancel orders for itself |
//! | clerk | the shop and the bank on anyone's behalf; reads stream history, aggregate states and projections |
//! | admin | everything, including retrying dead letters and rebuilding projections |
//!
//! Another customer's row reads as absent (`null`, `NOT_FOUND`), so
//! existence is not leaked; an operation above the caller's role is
//! `FORBIDDEN`; a missing token where one is needed is `UNAUTHENTICATED`.

use std::sync::Arc;

use uuid::Uuid;

use super::{ServiceError, Services};
use crate::es::envelope::Actor;
use crate::infra::jwt::{Jwt, TokenError};

/// How requests are authenticated.
pub enum Access {
    /// No authentication: every caller is an admin (loopback development).
    Open,
    /// Bearer JWTs.
    Jwt(Arc<Jwt>),
}

/// What a caller is, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRole {
    Anonymous,
    /// A customer; its token's `sub` is its customer id.
    Customer(Uuid),
    Clerk,
    Admin,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: CallerRole,
    /// The token's subject, if any.
    pub sub: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Caller { role: CallerRole::Anonymous, sub: None }
    }

    /// The caller of open mode.
    pub fn open_admin() -> Self {
        Caller { role: CallerRole::Admin, sub: None }
    }

    /// Clerks and admins act on anyone's behalf.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, CallerRole::Clerk | CallerRole::Admin)
    }

    /// The customer this caller is, if it is one.
    pub fn customer(&self) -> Option<Uuid> {
        match self.role {
            CallerRole::Customer(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the caller may see the rows of customer `owner` (`None`: a
    /// row no customer owns, which only staff see).
    pub fn may_see(&self, owner: Option<Uuid>) -> bool {
        self.is_staff() || (self.customer().is_some() && self.customer() == owner)
    }

    /// Refuses callers who are not clerks or admins.
    pub fn require_staff(&self) -> Result<(), ServiceError> {
        self.require(self.is_staff(), "clerks and admins")
    }

    /// Refuses callers who are not admins.
    pub fn require_admin(&self) -> Result<(), ServiceError> {
        self.require(self.role == CallerRole::Admin, "admins")
    }

    /// Refuses anonymous callers.
    pub fn require_signed_in(&self) -> Result<(), ServiceError> {
        self.require(self.role != CallerRole::Anonymous, "signed-in callers")
    }

    fn require(&self, allowed: bool, who: &str) -> Result<(), ServiceError> {
        match (allowed, self.role) {
            (true, _) => Ok(()),
            (false, CallerRole::Anonymous) => Err(ServiceError::Unauthenticated(format!(
                "this operation needs a bearer token of {who}"
            ))),
            (false, _) => Err(ServiceError::Forbidden(format!("only {who} may do this"))),
        }
    }

    /// Who the events of this caller's commands are recorded as.
    pub fn actor(&self) -> Actor {
        let role = match self.role {
            CallerRole::Anonymous => "anonymous",
            CallerRole::Customer(_) => "customer",
            CallerRole::Clerk => "clerk",
            CallerRole::Admin => "admin",
        };
        Actor { role: role.to_owned(), sub: self.sub.clone() }
    }
}

impl Access {
    /// Whether requests carry identities (false in open mode).
    pub fn is_enforced(&self) -> bool {
        matches!(self, Access::Jwt(_))
    }

    /// The caller of a request without a token.
    pub fn default_caller(&self) -> Caller {
        match self {
            Access::Open => Caller::open_admin(),
            Access::Jwt(_) => Caller::anonymous(),
        }
    }
}

impl Services {
    /// The caller behind an `Authorization` header value (`Bearer <jwt>`).
    /// No header is the anonymous caller (every caller is an admin in open
    /// mode); a header that does not verify is refused, never anonymous.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ServiceError> {
        let Access::Jwt(jwt) = &self.access else { return Ok(Caller::open_admin()) };
        let Some(header) = authorization else { return Ok(Caller::anonymous()) };
        let refused = |why: String| ServiceError::Unauthenticated(why);
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refused("the Authorization header must be `Bearer <token>`".into()))?;
        let claims = jwt.verify(token).map_err(|e| match e {
            TokenError::Expired => refused(e.to_string()),
            TokenError::Invalid(_) => refused(e.to_string()),
        })?;
        let role = match claims.role.as_str() {
            "admin" => CallerRole::Admin,
            "clerk" => CallerRole::Clerk,
            "customer" => {
                let id = claims.sub.as_deref().and_then(|s| Uuid::parse_str(s).ok());
                CallerRole::Customer(id.ok_or_else(|| {
                    refused("a customer token's `sub` must be its customer id (a UUID)".into())
                })?)
            }
            other => return Err(refused(format!("unknown role {other:?}"))),
        };
        Ok(Caller { role, sub: claims.sub })
    }
}
