// The demo's Thrift service: sayHello answers with the version of the server
// that handled the call, so that weighted routes show in the clients' logs.
namespace go hello

struct HelloReply {
  1: string message
  2: string version
  3: string host
}

service HelloService {
  HelloReply sayHello(1: string name)
}
