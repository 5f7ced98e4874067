/*
 * A plain OpenSSL 3 TLS server with no DANE code, for the preload shim's broker mode (run
 * through `iotsafe-run --broker` by tests/preload_client.rs). It serves 127.0.0.1:PORT, one
 * connection after the other, answering each client it admitted with an HTTP page that says
 * "admitted".
 *
 * Usage: shim_server PORT CERT KEY MODE
 *   MODE  "tls-method-optional": a TLS_method() context asking for optional client
 *         certificates (SSL_VERIFY_PEER only); "per-ssl-none": a server context requiring
 *         them, switched off on each SSL by SSL_set_verify(SSL_VERIFY_NONE); "sni-vhost": a
 *         server context requiring them whose servername callback moves every SSL to a host
 *         context that never set verification (TLS_method(), SSL_VERIFY_NONE), taking that
 *         context's verify mode, as nginx does for its server blocks; "cache-after-verify": a
 *         server context requiring them, TLS 1.2 without tickets, whose session cache is
 *         switched on after SSL_CTX_set_verify (nginx's order), so that sessions resume by id;
 *         "ssl-info-clear": a server context requiring them, one SSL for every connection,
 *         with an info callback of its own, made ready for the next client by SSL_clear
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int listen_on(unsigned short port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0) {
		perror("listen");
		exit(2);
	}
	return fd;
}

/* "sni-vhost": the host context of the name the client asked for. */
static SSL_CTX *vhost_ctx;

static int to_vhost(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	(void)arg;
	SSL_set_SSL_CTX(ssl, vhost_ctx);
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(vhost_ctx), NULL);
	return SSL_TLSEXT_ERR_OK;
}

/* "ssl-info-clear": the server's own (SSL-level) info callback; it only counts. */
static unsigned long info_events;

static void count_info(const SSL *ssl, int where, int ret)
{
	(void)ssl;
	(void)where;
	(void)ret;
	info_events++;
}

static SSL_CTX *serving_context(const SSL_METHOD *method, const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	return ctx;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: shim_server PORT CERT KEY MODE\n");
		return 2;
	}
	const char *mode = argv[4];
	int per_ssl = !strcmp(mode, "per-ssl-none");
	int vhost = !strcmp(mode, "sni-vhost");
	int cache = !strcmp(mode, "cache-after-verify");
	int reused = !strcmp(mode, "ssl-info-clear");
	int required = per_ssl || vhost || cache || reused;
	SSL_CTX *ctx =
	    serving_context(required ? TLS_server_method() : TLS_method(), argv[2], argv[3]);
	SSL_CTX_set_verify(ctx, required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
					 : SSL_VERIFY_PEER,
			   NULL);
	if (cache) {
		static const unsigned char id_context[] = "shim_server";
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_id_context(ctx, id_context, sizeof id_context - 1);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	}
	if (vhost) {
		vhost_ctx = serving_context(TLS_method(), argv[2], argv[3]);
		SSL_CTX_set_tlsext_servername_callback(ctx, to_vhost);
	}
	int listener = listen_on((unsigned short)atoi(argv[1]));
	SSL *kept = NULL;
	if (reused) {
		kept = SSL_new(ctx);
		SSL_set_info_callback(kept, count_info);
	}
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0)
			continue;
		if (kept)
			SSL_clear(kept);
		SSL *ssl = kept ? kept : SSL_new(ctx);
		if (per_ssl)
			SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1) {
			char request[1024];
			SSL_read(ssl, request, sizeof request);
			const char page[] = "HTTP/1.0 200 OK\r\n\r\nadmitted\n";
			SSL_write(ssl, page, sizeof page - 1);
			SSL_shutdown(ssl);
		}
		ERR_clear_error();
		if (!kept)
			SSL_free(ssl);
		close(fd);
	}
}
