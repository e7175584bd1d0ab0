// Command gotoken mimics the original Go service's token code, for interop tests of src/auth/tokenCodec.ts.
//
//	gotoken mint-user    <hexkey> <claims-json>   prints a token (expires_at defaults to 2099-05-24T15:30:45.123456789+07:00)
//	gotoken mint-admin   <hexkey> <claims-json>
//	gotoken verify-user  <hexkey> <token>         prints the claims as JSON, exits 1 when refused
//	gotoken verify-admin <hexkey> <token>
//	gotoken vectors                               prints fixed-key test vectors: go run . vectors > vectors.json
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

type UserClaims struct {
	CompanyID string    `json:"company_id"`
	AgentID   string    `json:"agent_id"`
	UserID    string    `json:"user_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

type AdminClaims struct {
	AdminID              string    `json:"admin_id"`
	CompanyIDRestriction string    `json:"company_id_restriction,omitempty"`
	SubscribedCompanyID  string    `json:"subscribed_company_id,omitempty"`
	SubscribedAgentID    string    `json:"subscribed_agent_id,omitempty"`
	ExpiresAt            time.Time `json:"expires_at"`
}

func defaultExpiry() time.Time {
	return time.Date(2099, 5, 24, 15, 30, 45, 123456789, time.FixedZone("", 7*3600))
}

func newGCM(hexKey string) (cipher.AEAD, error) {
	key, err := hex.DecodeString(hexKey)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(hexKey string, claims any) (string, error) {
	gcm, err := newGCM(hexKey)
	if err != nil {
		return "", err
	}
	plaintext, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(gcm.Seal(nonce, nonce, plaintext, nil)), nil
}

func open(hexKey, token string, claims any) error {
	gcm, err := newGCM(hexKey)
	if err != nil {
		return err
	}
	data, err := base64.URLEncoding.DecodeString(token)
	if err != nil {
		return err
	}
	if len(data) < gcm.NonceSize()+gcm.Overhead() {
		return errors.New("token too short")
	}
	plaintext, err := gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(plaintext, claims)
}

func mintUser(hexKey, claimsJSON string) (string, error) {
	var c UserClaims
	if err := json.Unmarshal([]byte(claimsJSON), &c); err != nil {
		return "", err
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = defaultExpiry()
	}
	return seal(hexKey, c)
}

func mintAdmin(hexKey, claimsJSON string) (string, error) {
	var c AdminClaims
	if err := json.Unmarshal([]byte(claimsJSON), &c); err != nil {
		return "", err
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = defaultExpiry()
	}
	return seal(hexKey, c)
}

func verifyUser(hexKey, token string) (any, error) {
	var c UserClaims
	if err := open(hexKey, token, &c); err != nil {
		return nil, err
	}
	if c.CompanyID == "" || c.AgentID == "" || c.UserID == "" {
		return nil, errors.New("missing claims")
	}
	if time.Now().After(c.ExpiresAt) {
		return nil, errors.New("token expired")
	}
	return c, nil
}

func verifyAdmin(hexKey, token string) (any, error) {
	var c AdminClaims
	if err := open(hexKey, token, &c); err != nil {
		return nil, err
	}
	if c.AdminID == "" {
		return nil, errors.New("missing claims")
	}
	if time.Now().After(c.ExpiresAt) {
		return nil, errors.New("token expired")
	}
	return c, nil
}

type vector struct {
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	Token string `json:"token"`
	// Claims is the plaintext as Go marshalled it; ExpiresAtMs is Go's own reading of expires_at.
	Claims      json.RawMessage `json:"claims"`
	ExpiresAtMs int64           `json:"expires_at_ms"`
}

func vectors() ([]vector, error) {
	keyA := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	keyB := "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	utc := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	west := time.Date(2099, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -(9*3600+30*60)))
	inputs := []struct {
		kind   string
		key    string
		claims any
		exp    time.Time
	}{
		{"user", keyA, UserClaims{"company-1", "agent-1", "user-1", defaultExpiry()}, defaultExpiry()},
		{"user", keyB, UserClaims{"c-ü", "a/2", "u\"3", utc}, utc},
		{"admin", keyA, AdminClaims{"admin-1", "company-1", "company-2", "agent-2", defaultExpiry()}, defaultExpiry()},
		{"admin", keyB, AdminClaims{AdminID: "admin-2", ExpiresAt: west}, west},
	}
	out := make([]vector, 0, len(inputs))
	for _, in := range inputs {
		token, err := seal(in.key, in.claims)
		if err != nil {
			return nil, err
		}
		plaintext, err := json.Marshal(in.claims)
		if err != nil {
			return nil, err
		}
		out = append(out, vector{in.kind, in.key, token, plaintext, in.exp.UnixMilli()})
	}
	return out, nil
}

func run(args []string) (any, error) {
	if len(args) == 1 && args[0] == "vectors" {
		return vectors()
	}
	if len(args) != 3 {
		return nil, errors.New("usage: gotoken mint-user|mint-admin <hexkey> <claims-json> | verify-user|verify-admin <hexkey> <token> | vectors")
	}
	switch args[0] {
	case "mint-user":
		return mintUser(args[1], args[2])
	case "mint-admin":
		return mintAdmin(args[1], args[2])
	case "verify-user":
		return verifyUser(args[1], args[2])
	case "verify-admin":
		return verifyAdmin(args[1], args[2])
	}
	return nil, fmt.Errorf("unknown subcommand %q", args[0])
}

func main() {
	result, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotoken:", err)
		os.Exit(1)
	}
	if token, ok := result.(string); ok {
		fmt.Println(token)
		return
	}
	out, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotoken:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
