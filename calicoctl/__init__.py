"""calicoctl: the command line for Calico resources and IPAM in etcd (see calicoctl/cli.py)."""
