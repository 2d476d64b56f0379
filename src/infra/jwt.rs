//! Bearer tokens: verifying the JWTs clients present, and minting them from
//! the configured HS256 secret (for development and tests).
//!
//! Keys: an HS256 secret, or a PEM public key (RSA for RS256/384/512, EC
//! for ES256/384). `exp` is required, with a small leeway for clock skew;
//! issuer and audience are checked when configured.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// How far a token's `exp` may be in the past (clock skew between hosts).
const LEEWAY: Duration = Duration::from_secs(30);

/// The claims eventfold reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a customer's `sub` is its customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `admin`, `clerk` or `customer`.
    pub role: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a token was refused. The text is safe to show to its bearer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Why a key could not be loaded (at start-up).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// A verifier (and, with an HS256 secret, a minter) of bearer tokens.
pub struct Jwt {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Jwt {
    /// Tokens signed with the HS256 `secret`.
    pub fn from_secret(
        secret: &str,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError("AUTH_JWT_SECRET must be at least 32 bytes long".into()));
        }
        let bad = |e: jsonwebtoken::errors::Error| KeyError(format!("AUTH_JWT_SECRET: {e}"));
        let decoding = DecodingKey::from_secret(secret.as_bytes()).map_err(bad)?;
        let encoding = EncodingKey::from_secret(secret.as_bytes()).map_err(bad)?;
        Ok(Self::with(decoding, Some(encoding), &[Algorithm::HS256], issuer, audience))
    }

    /// Tokens signed with the private key of the PEM `public_key` (RSA or EC).
    pub fn from_public_key_pem(
        public_key: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(public_key) {
            let algorithms = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
            return Ok(Self::with(key, None, &algorithms, issuer, audience));
        }
        match DecodingKey::from_ec_pem(public_key) {
            Ok(key) => {
                let algorithms = [Algorithm::ES256, Algorithm::ES384];
                Ok(Self::with(key, None, &algorithms, issuer, audience))
            }
            Err(e) => Err(KeyError(format!(
                "AUTH_JWT_PUBLIC_KEY_FILE holds no RSA or EC public key in PEM: {e}"
            ))),
        }
    }

    fn with(
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        algorithms: &[Algorithm],
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.leeway = LEEWAY.as_secs();
        let mut required = vec!["exp"];
        if let Some(issuer) = &issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Jwt { decoding, encoding, validation, issuer, audience }
    }

    /// The claims of `token`, if its signature, expiry, issuer and audience
    /// hold.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Invalid(format!("no `{claim}` claim"))
                }
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("unexpected algorithm".into()),
                _ => TokenError::Invalid("malformed token".into()),
            }),
        }
    }

    /// A token for `role` (and `sub`) that expires after `ttl`, signed with
    /// the HS256 secret; `None` when only a public key is configured.
    pub fn mint(&self, role: &str, sub: Option<String>, ttl: Duration) -> Option<String> {
        let encoding = self.encoding.as_ref()?;
        let claims = Claims {
            sub,
            role: role.to_owned(),
            exp: jsonwebtoken::get_current_timestamp() + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, encoding).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a test secret that is long enough to be used";

    #[test]
    fn a_minted_token_verifies_and_a_tampered_one_does_not() {
        let jwt = Jwt::from_secret(SECRET, None, None).unwrap();
        let token = jwt.mint("clerk", Some("bob".into()), Duration::from_secs(60)).unwrap();
        let claims = jwt.verify(&token).unwrap();
        assert_eq!((claims.role.as_str(), claims.sub.as_deref()), ("clerk", Some("bob")));
        let other = Jwt::from_secret(&format!("{SECRET}!"), None, None).unwrap();
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn expired_tokens_and_wrong_audiences_are_refused() {
        let jwt = Jwt::from_secret(SECRET, None, None).unwrap();
        let claims = Claims { sub: None, role: "admin".into(), exp: 1_000, iss: None, aud: None };
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let old = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(matches!(jwt.verify(&old), Err(TokenError::Expired)));
        let strict = Jwt::from_secret(SECRET, None, Some("eventfold".into())).unwrap();
        let token = jwt.mint("admin", None, Duration::from_secs(60)).unwrap();
        assert!(matches!(strict.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_short_secret_is_refused_at_start() {
        assert!(Jwt::from_secret("short", None, None).is_err());
    }
}
