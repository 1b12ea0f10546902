package model

import (
	corev1 "k8s.io/api/core/v1"
)

// SecretData is a Secret's data with its stringData folded in, as the API server
// stores it; nil for no Secret. Without stringData it is the Secret's own map: read
// it, never change it.
func SecretData(s *corev1.Secret) map[string][]byte {
	if s == nil {
		return nil
	}
	if len(s.StringData) == 0 {
		return s.Data
	}
	data := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return data
}
