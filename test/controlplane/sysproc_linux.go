package controlplane

import "syscall"

// sysProcAttr puts a child in its own process group (so a stop reaches its
// children) and has the kernel kill it if the test process dies first, so no
// etcd or apiserver outlives a crashed or killed test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
