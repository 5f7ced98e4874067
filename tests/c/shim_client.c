/*
 * A plain OpenSSL 3 TLS client with no DANE code, for the preload shim's rules (run through
 * `iotsafe-run` by tests/preload_client.rs). It connects to 127.0.0.1:PORT.
 *
 * Usage: shim_client HOST PORT VERIFY [nonblock | repeat=N | peek | write | bio | resume |
 *                                      clear=NAME2 | decoy=PORT2]
 *   HOST    the server name given to OpenSSL: "sni:NAME" (SSL_set_tlsext_host_name),
 *           "host:NAME" (SSL_set1_host only), or "-" (none)
 *   VERIFY  "accept-all": peer verification with a verify callback that accepts every
 *           certificate (and prints what OpenSSL said at each depth); "none": SSL_VERIFY_NONE;
 *           "pkix": peer verification against the system's CAs, no callback; "launder": a
 *           callback that resets every error to X509_V_OK and accepts
 *   nonblock  the handshake is driven by SSL_do_handshake retries on a non-blocking socket
 *           that is not the TCP connection (this program relays the bytes)
 *   repeat=N  one handshake (which warms any cache), then N more on new connections, timed:
 *           prints "handshakes/s: RATE" (benches/shim.rs)
 *   peek    no handshake call: SSL_peek after SSL_set_connect_state handshakes (then waits
 *           at most 1 s for data)
 *   write   no handshake call: SSL_write of "secret-payload" handshakes
 *   bio     no handshake call: BIO_write of "secret-payload" on a BIO_f_ssl BIO handshakes
 *           (libssl calls its own functions)
 *   decoy=PORT2  as nonblock, with a second TCP connection (to PORT2) made after the first
 *           one and open during the handshake
 *   resume  two TLS 1.2 handshakes, the second offering the first one's session: prints
 *           "session reused" when the server resumed it
 *   clear=NAME2  a handshake with PORT (HOST must be "sni:NAME"), then the same SSL, after
 *           SSL_clear, on a new connection to PORT with the server name NAME2: prints
 *           "first handshake ok" when the first one succeeded
 * Prints "handshake ok" (exit 0) or "handshake failed: ERRORS" (exit 1).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int accept_all(int preverify_ok, X509_STORE_CTX *store)
{
	if (!preverify_ok)
		printf("callback: depth %d: %s (accepted)\n", X509_STORE_CTX_get_error_depth(store),
		       X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)));
	return 1;
}

static int launder(int preverify_ok, X509_STORE_CTX *store)
{
	(void)preverify_ok;
	X509_STORE_CTX_set_error(store, X509_V_OK);
	return 1;
}

static const char PAYLOAD[] = "secret-payload\n";

/* A handshake inside the first I/O call of `mode` ("peek", "write" or "bio"); 1 when that call
 * succeeded (peek: the handshake finished with no TLS error). */
static int handshake_in_io(SSL *ssl, int fd, const char *mode)
{
	SSL_set_connect_state(ssl);
	if (!strcmp(mode, "peek")) {
		struct timeval second = {.tv_sec = 1};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof second);
		char c;
		int rc = SSL_peek(ssl, &c, 1);
		return SSL_is_init_finished(ssl) && SSL_get_error(ssl, rc) != SSL_ERROR_SSL &&
		       ERR_peek_error() == 0;
	}
	if (!strcmp(mode, "write"))
		return SSL_write(ssl, PAYLOAD, sizeof PAYLOAD - 1) > 0;
	BIO *bio = BIO_new(BIO_f_ssl());
	BIO_set_ssl(bio, ssl, BIO_NOCLOSE);
	int rc = BIO_write(bio, PAYLOAD, sizeof PAYLOAD - 1);
	BIO_free(bio);
	return rc > 0;
}

static int tcp_connect(unsigned short port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		perror("connect");
		exit(2);
	}
	return fd;
}

/* Moves what is readable on `from` now (non-blocking) to `to`; 0 when nothing was. */
static int forward_pending(int from, int to)
{
	char buf[16384];
	int moved = 0;
	ssize_t n;
	while ((n = recv(from, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
		if (write(to, buf, (size_t)n) != n)
			exit(2);
		moved = 1;
	}
	return moved;
}

/* A non-blocking handshake whose bytes this program relays itself: the SSL's socket is one end
 * of a socketpair, and the server's answers reach it only when SSL_do_handshake has asked for
 * them, so the handshake surely takes several calls. The SSL has no TCP socket of its own (as
 * with curl's BIO). */
static int handshake_nonblocking(SSL *ssl, int tcp)
{
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		exit(2);
	fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK);
	SSL_set_fd(ssl, pair[0]);
	SSL_set_connect_state(ssl);
	int retries = 0;
	for (;;) {
		int rc = SSL_do_handshake(ssl);
		forward_pending(pair[1], tcp);
		if (rc == 1) {
			printf("retries: %d\n", retries);
			return 1;
		}
		int err = SSL_get_error(ssl, rc);
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			return rc;
		struct pollfd p = {.fd = tcp, .events = POLLIN};
		if (poll(&p, 1, 10000) != 1 || !forward_pending(tcp, pair[1]))
			return rc;
		retries++;
	}
}

/* One handshake on a new connection from `ctx` (`mode` NULL: blocking SSL_connect); 1 when it
 * succeeded. */
static int handshake(SSL_CTX *ctx, const char *host, unsigned short port, const char *mode)
{
	int fd = tcp_connect(port);
	int decoy = mode && !strncmp(mode, "decoy=", 6) ? tcp_connect((unsigned short)atoi(mode + 6))
							: -1;
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (!strncmp(host, "sni:", 4)) {
		SSL_set_tlsext_host_name(ssl, host + 4);
		SSL_set1_host(ssl, host + 4);
	} else if (!strncmp(host, "host:", 5)) {
		SSL_set1_host(ssl, host + 5);
	}
	int rc = !mode			      ? SSL_connect(ssl)
		 : !strcmp(mode, "nonblock") || decoy >= 0 ? handshake_nonblocking(ssl, fd)
					      : handshake_in_io(ssl, fd, mode);
	if (rc == 1)
		SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	if (decoy >= 0)
		close(decoy);
	return rc == 1;
}

/* A handshake with `name` at `port`, then the same SSL cleared for a connection with `name2`. */
static int handshake_after_clear(SSL_CTX *ctx, const char *name, unsigned short port,
				 const char *name2)
{
	SSL *ssl = SSL_new(ctx);
	int rc = 0;
	for (int round = 0; round < 2; round++) {
		int fd = tcp_connect(port);
		SSL_set_fd(ssl, fd);
		const char *server = round ? name2 : name;
		SSL_set_tlsext_host_name(ssl, server);
		SSL_set1_host(ssl, server);
		rc = SSL_connect(ssl);
		if (rc == 1)
			SSL_shutdown(ssl);
		close(fd);
		if (rc != 1)
			break;
		if (!round) {
			printf("first handshake ok\n");
			SSL_clear(ssl);
		}
	}
	SSL_free(ssl);
	return rc == 1;
}

/* A TLS 1.2 handshake, then another offering the session of the first. */
static int handshake_resuming(SSL_CTX *ctx, const char *name, unsigned short port)
{
	SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	SSL_SESSION *session = NULL;
	int rc = 0;
	for (int round = 0; round < 2; round++) {
		int fd = tcp_connect(port);
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		SSL_set_tlsext_host_name(ssl, name);
		SSL_set1_host(ssl, name);
		if (session)
			SSL_set_session(ssl, session);
		rc = SSL_connect(ssl);
		if (rc == 1 && round && SSL_session_reused(ssl))
			printf("session reused\n");
		if (rc == 1 && !round)
			session = SSL_get1_session(ssl);
		if (rc == 1)
			SSL_shutdown(ssl);
		SSL_free(ssl);
		close(fd);
		if (rc != 1)
			break;
	}
	SSL_SESSION_free(session);
	return rc == 1;
}

/* `n` handshakes after a first one, timed. */
static int repeat(SSL_CTX *ctx, const char *host, unsigned short port, long n)
{
	if (!handshake(ctx, host, port, NULL))
		return 0;
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < n; i++)
		if (!handshake(ctx, host, port, NULL))
			return 0;
	clock_gettime(CLOCK_MONOTONIC, &end);
	double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
	printf("handshakes/s: %.1f\n", (double)n / seconds);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
			"usage: shim_client HOST PORT VERIFY [nonblock | repeat=N | peek | write | bio |\n"
			"       resume | clear=NAME2 | decoy=PORT2]\n");
		return 2;
	}
	const char *host = argv[1], *verify = argv[3];
	unsigned short port = (unsigned short)atoi(argv[2]);
	long count = argc > 4 && !strncmp(argv[4], "repeat=", 7) ? atol(argv[4] + 7) : 0;
	const char *mode = argc > 4 && !count ? argv[4] : NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!strcmp(verify, "accept-all"))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_all);
	else if (!strcmp(verify, "launder"))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, launder);
	else if (!strcmp(verify, "pkix"))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_default_verify_paths(ctx);

	int ok;
	if (count)
		ok = repeat(ctx, host, port, count);
	else if (mode && !strcmp(mode, "resume"))
		ok = handshake_resuming(ctx, host + 4, port);
	else if (mode && !strncmp(mode, "clear=", 6))
		ok = handshake_after_clear(ctx, host + 4, port, mode + 6);
	else
		ok = handshake(ctx, host, port, mode);
	if (!ok) {
		printf("handshake failed: ");
		ERR_print_errors_fp(stdout);
		printf("\n");
		return 1;
	}
	if (!count)
		printf("handshake ok\n");
	SSL_CTX_free(ctx);
	return 0;
}
