// The etcd server at the version the pinned kube-apiserver's go.mod requires (etcd's own main calls etcdmain.Main).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
