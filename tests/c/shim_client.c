/*
 * A plain OpenSSL 3 TLS client with no DANE code, for the preload shim's rules (run through
 * `iotsafe-run` by tests/preload_client.rs). It connects to 127.0.0.1:PORT.
 *
 * Usage: shim_client HOST PORT VERIFY [nonblock | repeat=N]
 *   HOST    the server name given to OpenSSL: "sni:NAME" (SSL_set_tlsext_host_name),
 *           "host:NAME" (SSL_set1_host only), or "-" (none)
 *   VERIFY  "accept-all": peer verification with a verify callback that accepts every
 *           certificate (and prints what OpenSSL said at each depth); "none": SSL_VERIFY_NONE;
 *           "pkix": peer verification against the system's CAs, no callback
 *   nonblock  the handshake is driven by SSL_do_handshake retries on a non-blocking socket
 *           that is not the TCP connection (this program relays the bytes)
 *   repeat=N  one handshake (which warms any cache), then N more on new connections, timed:
 *           prints "handshakes/s: RATE" (benches/shim.rs)
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

/* One blocking handshake on a new connection from `ctx`; 1 when it succeeded. */
static int handshake(SSL_CTX *ctx, const char *host, unsigned short port, int nonblock)
{
	int fd = tcp_connect(port);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (!strncmp(host, "sni:", 4)) {
		SSL_set_tlsext_host_name(ssl, host + 4);
		SSL_set1_host(ssl, host + 4);
	} else if (!strncmp(host, "host:", 5)) {
		SSL_set1_host(ssl, host + 5);
	}
	int rc = nonblock ? handshake_nonblocking(ssl, fd) : SSL_connect(ssl);
	if (rc == 1)
		SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	return rc == 1;
}

/* `n` handshakes after a first one, timed. */
static int repeat(SSL_CTX *ctx, const char *host, unsigned short port, long n)
{
	if (!handshake(ctx, host, port, 0))
		return 0;
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < n; i++)
		if (!handshake(ctx, host, port, 0))
			return 0;
	clock_gettime(CLOCK_MONOTONIC, &end);
	double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
	printf("handshakes/s: %.1f\n", (double)n / seconds);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: shim_client HOST PORT VERIFY [nonblock | repeat=N]\n");
		return 2;
	}
	const char *host = argv[1], *verify = argv[3];
	unsigned short port = (unsigned short)atoi(argv[2]);
	int nonblock = argc > 4 && !strcmp(argv[4], "nonblock");
	long count = argc > 4 && !strncmp(argv[4], "repeat=", 7) ? atol(argv[4] + 7) : 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!strcmp(verify, "accept-all"))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_all);
	else if (!strcmp(verify, "pkix"))
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_default_verify_paths(ctx);

	int ok = count ? repeat(ctx, host, port, count) : handshake(ctx, host, port, nonblock);
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
