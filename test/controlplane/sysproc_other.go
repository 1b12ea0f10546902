//go:build unix && !linux

package controlplane

import "syscall"

// sysProcAttr puts a child in its own process group so a stop reaches its
// children. Only Linux can also tie the child's life to ours.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
