//! Provider credentials are sealed (ChaCha20-Poly1305) before they reach the database, with a
//! key that lives only in doorsync's configuration. The record body keeps
//! `"credentials": {"sealed": "<hex nonce and ciphertext>"}`.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::fmt;

pub struct SecretKey(LessSafeKey);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "a secret key is 64 hexadecimal characters (32 bytes); `doorsync key generate` makes one"
    )]
    BadKey,
    #[error(
        "stored credentials cannot be decrypted with this secret key (was DOORSYNC_SECRET_KEY changed?)"
    )]
    WrongKey,
    #[error(
        "stored credentials are sealed but doorsync has no secret key: set DOORSYNC_SECRET_KEY"
    )]
    NoKey,
}

// Never show key material, even in a debug log line.
impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl SecretKey {
    pub fn parse(s: &str) -> Result<SecretKey, SecretError> {
        let bytes = unhex(s.trim())
            .filter(|b| b.len() == 32)
            .ok_or(SecretError::BadKey)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SecretError::BadKey)?;
        Ok(SecretKey(LessSafeKey::new(key)))
    }

    /// A new random key, as 64 hex characters.
    pub fn generate() -> String {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).expect("the system has randomness");
        hex(&b)
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system has randomness");
        let mut data = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("sealing a small buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend(data);
        hex(&out)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = unhex(sealed)
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SecretError::WrongKey)?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::WrongKey)?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| SecretError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key() {
        let k = SecretKey::parse(&SecretKey::generate()).unwrap();
        let sealed = k.seal(b"hunter2");
        assert!(!sealed.contains(&hex(b"hunter2")));
        assert_ne!(sealed, k.seal(b"hunter2"), "a fresh nonce each time");
        assert_eq!(k.open(&sealed).unwrap(), b"hunter2");
        let other = SecretKey::parse(&SecretKey::generate()).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::WrongKey));
        assert_eq!(SecretKey::parse("abc").unwrap_err(), SecretError::BadKey);
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }
}
