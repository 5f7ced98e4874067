/*
 * A plain OpenSSL client that authenticates a TLS server by DNSSEC-validated TLSA records,
 * using the per-connection call iotsafe_dane_ssl_enable() before SSL_connect().
 *
 * Usage: dane_client HOST PORT
 * Environment: IOTSAFE_DANE_RESOLVER, IOTSAFE_DANE_TRUST_ANCHOR, IOTSAFE_DANE_POLICY (as for
 *              mqtt_dane_pub; see README.md).
 * Exit status: 0 authenticated, 1 not authenticated (refused before or during the handshake),
 *              2 usage, set-up or network error.
 */
#define _POSIX_C_SOURCE 200809L

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <iotsafe_dane.h>

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = {0}, *res, *ai;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "cannot resolve %s: %s\n", host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "cannot connect to %s:%s\n", host, port);
	return fd;
}

static void print_authority(SSL *ssl)
{
	uint8_t usage, selector, mtype;
	const unsigned char *data;
	size_t len;
	int depth = SSL_get0_dane_authority(ssl, NULL, NULL);
	if (depth >= 0 && SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, &data, &len) >= 0) {
		printf("authenticated by TLSA %u %u %u ", usage, selector, mtype);
		for (size_t i = 0; i < len && i < 32; i++)
			printf("%02x", data[i]);
		printf("%s at depth %d\n", len > 32 ? "..." : "", depth);
	} else {
		printf("authenticated by PKIX (the server has no DANE records)\n");
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
		return 2;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "bad port %s\n", argv[2]);
		return 2;
	}
	const char *policy_name = getenv("IOTSAFE_DANE_POLICY");
	int policy = (policy_name && strcmp(policy_name, "opportunistic") == 0)
			     ? IOTSAFE_DANE_OPPORTUNISTIC
			     : IOTSAFE_DANE_REQUIRE;

	iotsafe_dane *dane =
		iotsafe_dane_new(getenv("IOTSAFE_DANE_RESOLVER"), getenv("IOTSAFE_DANE_TRUST_ANCHOR"));
	if (!dane) {
		fprintf(stderr, "DANE set-up failed: %s\n", iotsafe_dane_last_error());
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fprintf(stderr, "cannot create an SSL_CTX\n");
		return 2;
	}
	/* For the opportunistic PKIX fallback. */
	SSL_CTX_set_default_verify_paths(ctx);

	int fd = tcp_connect(host, argv[2]);
	if (fd < 0)
		return 2;
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, host);

	int status = 1;
	/* Look up _<port>._tcp.<host> and put the validated records on this connection. */
	if (iotsafe_dane_ssl_enable(dane, ssl, host, (uint16_t)port, policy) != 1) {
		fprintf(stderr, "refused before the handshake (%s): %s\n",
			iotsafe_dane_reason_name(iotsafe_dane_last_reason(ssl)),
			iotsafe_dane_last_error());
		goto out;
	}
	if (SSL_connect(ssl) != 1) {
		long verify = SSL_get_verify_result(ssl);
		fprintf(stderr, "server %s:%d not authenticated (%s): %s\n", host, port,
			iotsafe_dane_reason_name(iotsafe_dane_last_reason(ssl)),
			verify != X509_V_OK ? X509_verify_cert_error_string(verify)
					    : "handshake failed");
		ERR_print_errors_fp(stderr);
		goto out;
	}
	printf("%s:%d ", host, port);
	print_authority(ssl);
	SSL_shutdown(ssl);
	status = 0;

out:
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	iotsafe_dane_free(dane);
	return status;
}
