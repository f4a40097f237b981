//! SASL/PLAIN (RFC 4616), sans-io: one message `authzid NUL authcid NUL
//! passwd`, checked against the same SCRAM credentials (the password is
//! never stored; its SCRAM keys are derived again and compared).

use super::scram::ScramCredential;

/// Why a PLAIN message was refused; the text names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed SASL/PLAIN message")]
    Malformed,
    #[error("the authorization id differs from the user name")]
    AuthzId,
    #[error("invalid credentials")]
    BadCredentials,
}

/// Check a PLAIN message; `credentials` finds the user's stored SCRAM
/// credentials (any mechanism: the first that matches wins). Returns the
/// user.
pub fn authenticate(
    message: &[u8],
    credentials: impl FnOnce(&str) -> Vec<ScramCredential>,
) -> Result<String, PlainError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(PlainError::AuthzId);
    }
    let found = credentials(user);
    if found.iter().any(|c| c.check_password(password)) {
        Ok(user.to_string())
    } else {
        Err(PlainError::BadCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::ScramMechanism;

    #[test]
    fn plain_against_scram_credentials() {
        let cred = ScramCredential::from_password("ann", ScramMechanism::Sha512, b"pw", b"s", 4096);
        let lookup = |u: &str| {
            if u == "ann" {
                vec![cred.clone()]
            } else {
                vec![]
            }
        };
        assert_eq!(authenticate(b"\0ann\0pw", lookup), Ok("ann".into()));
        assert_eq!(authenticate(b"ann\0ann\0pw", lookup), Ok("ann".into()));
        assert_eq!(
            authenticate(b"\0ann\0px", lookup),
            Err(PlainError::BadCredentials)
        );
        assert_eq!(
            authenticate(b"\0bob\0pw", lookup),
            Err(PlainError::BadCredentials)
        );
        assert_eq!(
            authenticate(b"x\0ann\0pw", lookup),
            Err(PlainError::AuthzId)
        );
        for bad in [
            &b""[..],
            b"ann",
            b"\0ann",
            b"\0ann\0pw\0",
            b"\0\0pw",
            b"\0ann\0",
        ] {
            assert_eq!(
                authenticate(bad, lookup),
                Err(PlainError::Malformed),
                "{bad:?}"
            );
        }
    }
}
