package keys

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// SecretPrefix starts every gateway key, so it is recognisable in code
// review and by secret scanners.
const SecretPrefix = "llmp-"

// secretBytes is the entropy of a secret: 256 bits.
const secretBytes = 32

// secretLen is the length of a secret: the prefix and 43 base64url
// characters.
var secretLen = len(SecretPrefix) + base64.RawURLEncoding.EncodedLen(secretBytes)

// newSecret draws a secret from r (crypto/rand.Reader in production).
func newSecret(r io.Reader) (string, error) {
	b := make([]byte, secretBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("draw a key secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// newKeyID draws a display id: "key_" and 12 hex characters (48 random
// bits; creation retries on the rare collision).
func newKeyID(r io.Reader) (string, error) {
	b := make([]byte, 6)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("draw a key id: %w", err)
	}
	return "key_" + hex.EncodeToString(b), nil
}

// HashSecret returns the hex SHA-256 of a secret, the only form the store
// keeps.
//
// Why SHA-256 and not bcrypt/scrypt/argon2: those exist to slow down
// brute force on low-entropy human passwords. A gateway key carries 256
// random bits, so no amount of hashing speed makes guessing it feasible,
// while a deliberately slow hash would cost milliseconds of CPU on every
// LLM request and turn the authentication path into a denial-of-service
// target. A fast, unsalted hash also lets the index be a plain map from
// hash to key, with no per-key salt to try.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// LooksLikeSecret reports whether s has the shape of a gateway key (prefix
// and length). The processor can use it to tell a gateway key from a
// vendor key in mixed deployments; it proves nothing about validity.
func LooksLikeSecret(s string) bool {
	return len(s) == secretLen && strings.HasPrefix(s, SecretPrefix)
}
