package index

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
)

// saltLen is the salt length of RabbitMQ's password hashes.
const saltLen = 4

// HashPassword returns a RabbitMQ-compatible salted hash of password under
// alg: a 4-byte random salt followed by hash(salt || password).
func HashPassword(alg HashAlgorithm, password string) ([]byte, error) {
	var salt [saltLen]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("index: password salt: %w", err)
	}
	return hashWithSalt(alg, salt[:], password)
}

func hashWithSalt(alg HashAlgorithm, salt []byte, password string) ([]byte, error) {
	buf := append(append([]byte(nil), salt...), password...)
	out := append([]byte(nil), salt...)
	switch alg {
	case HashSHA256:
		h := sha256.Sum256(buf)
		return append(out, h[:]...), nil
	case HashSHA512:
		h := sha512.Sum512(buf)
		return append(out, h[:]...), nil
	case HashMD5:
		h := md5.Sum(buf)
		return append(out, h[:]...), nil
	default:
		return nil, fmt.Errorf("%w: hash algorithm %d", ErrInvalid, alg)
	}
}

// CheckPassword reports whether password matches the user's stored hash,
// comparing in constant time. A user with HashNone never matches.
func (u User) CheckPassword(password string) bool {
	if u.HashAlgorithm == HashNone || len(u.PasswordHash) < saltLen {
		return false
	}
	want, err := hashWithSalt(u.HashAlgorithm, u.PasswordHash[:saltLen], password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(want, u.PasswordHash) == 1
}
