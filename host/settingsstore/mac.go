package settingsstore

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// macInfo prefixes the HKDF info of every MAC key, so a MAC key is never a
// key of another use of APP_KEY (the AES-GCM settings key is APP_KEY itself).
const macInfo = "magicads settingsstore mac v1: "

// macKey derives the HMAC-SHA256 key of purpose from k: HKDF-SHA256 with
// APP_KEY as the secret and the purpose as info.
func macKey(k Key, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("settingsstore: MAC: empty purpose")
	}
	key, err := hkdf.Key(sha256.New, k.raw[:], nil, macInfo+purpose, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("settingsstore: MAC key %s: %w", k.id, err)
	}
	return key, nil
}

// mac computes HMAC-SHA256(macKey(k, purpose), msg).
func mac(k Key, purpose string, msg []byte) ([]byte, error) {
	key, err := macKey(k, purpose)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil), nil
}

// MAC authenticates msg for purpose under the current APP_KEY: it returns
// HMAC-SHA256 of msg with a key derived from APP_KEY by HKDF-SHA256 with
// purpose as info. purpose names what is authenticated (for example
// "plugin install record v1"), so a MAC made for one purpose never verifies
// for another.
func (kr *Keyring) MAC(purpose string, msg []byte) ([]byte, error) {
	return mac(kr.current, purpose, msg)
}

// VerifyMAC reports whether sum is MAC(purpose, msg) under one of the
// keys the keyring accepts (current first, then APP_KEY_PREVIOUS). current
// is false when only a previous key matched: the caller should store a
// fresh MAC so the old key can be retired.
func (kr *Keyring) VerifyMAC(purpose string, msg, sum []byte) (ok, current bool) {
	for i, id := range kr.ids {
		want, err := mac(kr.byID[id], purpose, msg)
		if err != nil {
			return false, false
		}
		if hmac.Equal(want, sum) {
			return true, i == 0
		}
	}
	return false, false
}
