#ifndef MAILGATE_CCURL_SHIM_H
#define MAILGATE_CCURL_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot
// call: one typed wrapper per argument type. Macros that are expressions
// do not import either.
static inline CURLcode mailgate_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode mailgate_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode mailgate_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode mailgate_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*mailgate_curl_data_callback)(char *data, size_t size, size_t count, void *context);
static inline CURLcode mailgate_curl_setopt_callback(CURL *handle, CURLoption option, mailgate_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode mailgate_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline long mailgate_CURL_GLOBAL_DEFAULT(void) { return CURL_GLOBAL_DEFAULT; }
static inline int mailgate_CURL_ERROR_SIZE(void) { return CURL_ERROR_SIZE; }
#endif
