//! Bring-your-own-key credentials at rest: AES-256-GCM (RustCrypto
//! `aes-gcm`) under a master key read from a secret Spin variable, a fresh
//! random 96-bit nonce per ciphertext (from a [`NonceSource`] the caller
//! passes in: `wasi:random` in the components), the org id as associated
//! data (a ciphertext copied into another org's row does not decrypt), and
//! the id of the master key on every ciphertext so the master key can be
//! rotated: the [`KeyRing`] holds the current key and the previous ones,
//! old ciphertexts decrypt while [`super::store::rotate_credentials`]
//! re-encrypts them under the current key.
//!
//! Master keys are written `ID:HEX` (an id of 1–32 letters, digits, `-` or
//! `_`, and 64 hex digits = 32 bytes, e.g. from `openssl rand -hex 32`);
//! `credentials_previous_keys` holds such pairs separated by commas.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use thiserror::Error;

use crate::hex;

/// Bytes of a nonce (AES-GCM's standard 96 bits).
pub const NONCE_LEN: usize = 12;

/// Random bytes for nonces. The components pass `wasi:random`, which Spin
/// serves from the host's CSPRNG; tests pass a counter.
pub trait NonceSource {
    /// Fills `buf` with fresh random bytes.
    fn fill(&mut self, buf: &mut [u8; NONCE_LEN]);
}

/// Why a master key or a ciphertext was refused. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// No master key is configured (`credentials_master_key` is empty).
    #[error(
        "credentials_master_key is not set: BYOK credentials cannot be stored or used until it is"
    )]
    NoMasterKey,
    /// A master key variable does not have the form `ID:HEX` (64 hex digits).
    #[error(
        "{variable} must be ID:HEX (id of 1-32 letters, digits, - or _; 64 hex digits), entry {index}"
    )]
    MalformedKey {
        /// The variable at fault.
        variable: &'static str,
        /// The entry (0 for the current key; 0-based in the previous keys).
        index: usize,
    },
    /// Two master keys share an id.
    #[error("master key id `{0}` is given twice")]
    DuplicateKeyId(String),
    /// A ciphertext names a master key id the key ring does not hold.
    #[error("no master key with id `{0}` is configured (add it to credentials_previous_keys)")]
    UnknownKeyId(String),
    /// A stored ciphertext is not `NONCE_HEX:CIPHERTEXT_HEX`.
    #[error("stored ciphertext is malformed")]
    Malformed,
    /// Authentication failed: the master key under this id is wrong, or the
    /// ciphertext was altered or belongs to another org.
    #[error("credential does not decrypt under master key `{0}`: wrong master key or tampered row")]
    WrongKey(String),
}

/// One master key: its id and its 32 bytes.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    // Never print key material, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// Parses `ID:HEX`.
    fn parse(raw: &str, variable: &'static str, index: usize) -> Result<Self, CryptoError> {
        let bad = || CryptoError::MalformedKey { variable, index };
        let (id, digits) = raw.trim().split_once(':').ok_or_else(bad)?;
        let id_ok = (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok || digits.len() != 64 {
            return Err(bad());
        }
        let bytes = hex::decode(digits).ok_or_else(bad)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self {
            id: id.to_owned(),
            key,
        })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.key))
    }
}

/// The master keys in force: the current one (new ciphertexts) and the
/// previous ones (still decrypt during a rotation).
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

/// A ciphertext as stored: the master key id and
/// `v2:NONCE_HEX:CIPHERTEXT_HEX` (written before the provider was bound:
/// `NONCE_HEX:CIPHERTEXT_HEX`, still read; see [`Sealed::is_current_format`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the master key that encrypted it.
    pub key_id: String,
    /// `v2:`, hex nonce, `:`, hex ciphertext with its 16-byte tag.
    pub blob: String,
}

/// The prefix of a ciphertext bound to its org *and* provider.
const V2: &str = "v2:";

impl Sealed {
    /// Whether it binds its provider as well as its org (written by this
    /// build); an older one is re-sealed by the next rotation.
    pub fn is_current_format(&self) -> bool {
        self.blob.starts_with(V2)
    }
}

/// Which credential a ciphertext is: its org and provider, both
/// authenticated as associated data, so a ciphertext moved to another org's
/// row or another provider's does not decrypt (an Anthropic key can never
/// be sent to OpenAI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialSlot<'a> {
    /// The org id.
    pub org_id: &'a str,
    /// The provider (`openai`, `anthropic`, …).
    pub provider: &'a str,
}

impl CredentialSlot<'_> {
    fn associated_data(self) -> Vec<u8> {
        [
            b"dol-credential-v2\0".as_slice(),
            self.org_id.as_bytes(),
            b"\0",
            self.provider.as_bytes(),
        ]
        .concat()
    }
}

impl KeyRing {
    /// The ring from the `credentials_master_key` and
    /// `credentials_previous_keys` variables. An empty current key is
    /// [`CryptoError::NoMasterKey`]; a malformed one is refused, never
    /// ignored.
    pub fn from_variables(current: &str, previous: &str) -> Result<Self, CryptoError> {
        if current.trim().is_empty() {
            return Err(CryptoError::NoMasterKey);
        }
        let current = MasterKey::parse(current, "credentials_master_key", 0)?;
        let mut ring = Self {
            current,
            previous: Vec::new(),
        };
        for (i, raw) in previous
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .enumerate()
        {
            let key = MasterKey::parse(raw, "credentials_previous_keys", i)?;
            if ring.get(&key.id).is_some() {
                return Err(CryptoError::DuplicateKeyId(key.id));
            }
            ring.previous.push(key);
        }
        Ok(ring)
    }

    /// [`KeyRing::from_variables`] through a variable lookup (`var`
    /// answers "" for an unset variable), as every component reads it.
    pub fn from_lookup(var: impl Fn(&str) -> String) -> Result<Self, CryptoError> {
        Self::from_variables(
            &var("credentials_master_key"),
            &var("credentials_previous_keys"),
        )
    }

    /// The id new ciphertexts are written under.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Encrypts `plaintext` for `slot` under the current key with a fresh
    /// nonce.
    pub fn seal(
        &self,
        nonces: &mut impl NonceSource,
        slot: CredentialSlot<'_>,
        plaintext: &str,
    ) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        nonces.fill(&mut nonce);
        let aad = slot.associated_data();
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: &aad,
        };
        // AES-GCM encryption fails only past 64 GiB of plaintext; a
        // credential is bytes long, so the empty fallback is unreachable.
        let ct = self
            .current
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        Sealed {
            key_id: self.current.id.clone(),
            blob: format!("{V2}{}:{}", hex::encode(&nonce), hex::encode(&ct)),
        }
    }

    /// Decrypts `sealed` for `slot` with the key its id names.
    pub fn open(&self, slot: CredentialSlot<'_>, sealed: &Sealed) -> Result<String, CryptoError> {
        let key = self
            .get(&sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?;
        // An older ciphertext bound the org only.
        let (blob, aad) = match sealed.blob.strip_prefix(V2) {
            Some(blob) => (blob, slot.associated_data()),
            None => (sealed.blob.as_str(), slot.org_id.as_bytes().to_vec()),
        };
        let (nonce_hex, ct_hex) = blob.split_once(':').ok_or(CryptoError::Malformed)?;
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce_hex)
            .and_then(|n| n.try_into().ok())
            .ok_or(CryptoError::Malformed)?;
        let ct = hex::decode(ct_hex).ok_or(CryptoError::Malformed)?;
        let payload = Payload {
            msg: &ct,
            aad: &aad,
        };
        let plain = key
            .cipher()
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| CryptoError::WrongKey(key.id.clone()))?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }
}

/// Shortest credential whose last four characters are shown: of a shorter
/// one they would give away too much of it.
pub const MIN_LEN_SHOWN: usize = 12;

/// The last four characters of a credential: all an API ever shows of it
/// (nothing of one shorter than [`MIN_LEN_SHOWN`]).
pub fn last_four(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < MIN_LEN_SHOWN {
        return String::new();
    }
    chars[chars.len() - 4..].iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic nonce source for tests (a counter; never reuse in production).
    pub(crate) struct Counter(pub u64);

    impl NonceSource for Counter {
        fn fill(&mut self, buf: &mut [u8; NONCE_LEN]) {
            self.0 += 1;
            buf[..8].copy_from_slice(&self.0.to_be_bytes());
        }
    }

    const ACME: CredentialSlot<'static> = CredentialSlot {
        org_id: "acme",
        provider: "openai",
    };

    pub(crate) const K1: &str =
        "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    pub(crate) const K2: &str =
        "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff";

    #[test]
    fn round_trips_and_binds_the_org() {
        let ring = KeyRing::from_variables(K1, "").unwrap();
        let sealed = ring.seal(&mut Counter(0), ACME, "sk-live-secret-1234");
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.blob.contains("secret"));
        assert_eq!(ring.open(ACME, &sealed).unwrap(), "sk-live-secret-1234");
        // Another org's id as associated data: authentication fails.
        assert_eq!(
            ring.open(
                CredentialSlot {
                    org_id: "other",
                    ..ACME
                },
                &sealed
            ),
            Err(CryptoError::WrongKey("k1".into()))
        );
        // Another provider's slot of the same org: refused as well.
        assert_eq!(
            ring.open(
                CredentialSlot {
                    provider: "anthropic",
                    ..ACME
                },
                &sealed
            ),
            Err(CryptoError::WrongKey("k1".into()))
        );
        assert!(sealed.is_current_format());
    }

    /// What builds before the provider binding wrote: the org alone as
    /// associated data, no prefix.
    pub(crate) fn seal_older_format(ring: &KeyRing, org_id: &str, plaintext: &str) -> Sealed {
        let nonce = [7u8; NONCE_LEN];
        let ct = ring
            .current
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: org_id.as_bytes(),
                },
            )
            .unwrap();
        Sealed {
            key_id: ring.current_id().to_owned(),
            blob: format!("{}:{}", hex::encode(&nonce), hex::encode(&ct)),
        }
    }

    #[test]
    fn a_ciphertext_of_the_older_format_still_opens_for_its_org() {
        let ring = KeyRing::from_variables(K1, "").unwrap();
        let older = seal_older_format(&ring, "acme", "sk-older");
        assert!(!older.is_current_format());
        assert_eq!(ring.open(ACME, &older).unwrap(), "sk-older");
        let other_org = CredentialSlot {
            org_id: "beta",
            ..ACME
        };
        assert!(ring.open(other_org, &older).is_err());
    }

    #[test]
    fn nonces_differ_so_ciphertexts_differ() {
        let ring = KeyRing::from_variables(K1, "").unwrap();
        let mut n = Counter(0);
        let a = ring.seal(&mut n, ACME, "same");
        let b = ring.seal(&mut n, ACME, "same");
        assert_ne!(a.blob, b.blob);
    }

    #[test]
    fn a_wrong_or_missing_key_is_an_error_never_plaintext() {
        let sealed = KeyRing::from_variables(K1, "")
            .unwrap()
            .seal(&mut Counter(0), ACME, "sk-x");
        let wrong = KeyRing::from_variables(
            "k1:ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "",
        )
        .unwrap();
        assert_eq!(
            wrong.open(ACME, &sealed),
            Err(CryptoError::WrongKey("k1".into()))
        );
        let other_id = KeyRing::from_variables(K2, "").unwrap();
        assert_eq!(
            other_id.open(ACME, &sealed),
            Err(CryptoError::UnknownKeyId("k1".into()))
        );
        assert_eq!(
            KeyRing::from_variables("", "").unwrap_err(),
            CryptoError::NoMasterKey
        );
        let mut tampered = sealed.clone();
        tampered.blob.push('0');
        assert!(wrong.open(ACME, &tampered).is_err());
    }

    #[test]
    fn previous_keys_still_decrypt() {
        let old = KeyRing::from_variables(K1, "").unwrap();
        let sealed = old.seal(&mut Counter(0), ACME, "sk-old");
        let rotating = KeyRing::from_variables(K2, K1).unwrap();
        assert_eq!(rotating.current_id(), "k2");
        assert_eq!(rotating.open(ACME, &sealed).unwrap(), "sk-old");
    }

    #[test]
    fn malformed_master_keys_are_named() {
        for bad in [
            "k1",
            "k1:abcd",
            "k 1:00",
            &format!("k1:{}", "zz".repeat(32)),
        ] {
            assert!(matches!(
                KeyRing::from_variables(bad, ""),
                Err(CryptoError::MalformedKey {
                    variable: "credentials_master_key",
                    ..
                })
            ));
        }
        assert!(matches!(
            KeyRing::from_variables(K1, &format!("{K2},nope")),
            Err(CryptoError::MalformedKey {
                variable: "credentials_previous_keys",
                index: 1
            })
        ));
        assert_eq!(
            KeyRing::from_variables(K1, K1).unwrap_err(),
            CryptoError::DuplicateKeyId("k1".into())
        );
        // Debug output never shows key material.
        let ring = KeyRing::from_variables(K1, "").unwrap();
        assert!(!format!("{ring:?}").contains("0001020304"));
    }

    #[test]
    fn last_four_shows_only_the_tail() {
        assert_eq!(last_four("sk-abcdef1234"), "1234");
        assert_eq!(last_four("ab"), "", "too short to show any of it");
        assert_eq!(last_four("sk-abc12345"), "", "11 characters");
    }
}
