package model

import "testing"

func TestParsePortName(t *testing.T) {
	cases := []struct {
		name string
		want Protocol
	}{
		{"tcp-dubbo", Dubbo},
		{"tcp-dubbo-28001", Dubbo},
		{"TCP-Dubbo", Dubbo},
		{"tcp-DUBBO-x-y", Dubbo},
		{"tcp-thrift", Thrift},
		{"tcp-thrift-hello", Thrift},
		{"tcp-kafka", Kafka},
		{"tcp-zookeeper", ZooKeeper},
		{"tcp-redis", Redis},
		{"tcp-redis-6379", Redis},
		{"tcp", TCP},
		{"tcp-", TCP},
		{"tcp-http", TCP},
		{"tcp-dubbox", TCP},
		{"dubbo", TCP},
		{"http-dubbo", TCP},
		{"udp-dubbo", TCP},
		{"grpc", TCP},
		{"", TCP},
		{"-dubbo", TCP},
		{"tcpdubbo", TCP},
	}
	for _, c := range cases {
		if got := ParsePortName(c.name); got != c.want {
			t.Errorf("ParsePortName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzParsePortName(f *testing.F) {
	for _, s := range []string{"tcp-dubbo", "tcp-redis-1", "TCP-KAFKA", "tcp-", "-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p := ParsePortName(name)
		if p != TCP && !p.Supported() {
			t.Fatalf("ParsePortName(%q) = %q: neither TCP nor supported", name, p)
		}
		// A declared protocol survives any suffix after a dash.
		if p != TCP && ParsePortName(name+"-x") != p {
			t.Fatalf("suffix changed protocol of %q", name)
		}
	})
}
