import JSON

/// The OpenAPI 3.1 document of Mailgate's HTTP contract, carried inside the
/// binary: `GET /openapi.json` serves it and `mailgate openapi` prints it.
/// This file is the repository's one copy of the document: edit the JSON
/// below (a raw string: backslashes are JSON's own). OpenAPITests check it
/// parses, names every `ErrorCode`, and lists the statuses and codes of
/// README.md's table of errors; SchemathesisTests check the live service
/// against it through nginx.
public enum OpenAPIDocument {
    /// The document as written here: `servers` is `/`, relative to where it
    /// is served.
    public static func json(basePath: String = "") -> [UInt8] {
        let bytes = Array(text.utf8)
        guard !basePath.isEmpty else { return bytes }
        // Under `--base-path /mail` the routes are /mail/token...: the one
        // server entry says so (its `url` replaced; re-encoded, compact).
        guard case .object(var members)? = try? JSONParser.parse(bytes),
              let index = members.firstIndex(where: { $0.0.utf8Equals("servers") }),
              case .array(var servers) = members[index].1, case .object(var server)? = servers.first,
              let url = server.firstIndex(where: { $0.0.utf8Equals("url") }) else { return bytes }
        server[url].1 = .string(basePath)
        servers[0] = .object(server)
        members[index].1 = .array(servers)
        return JSONWriter.encode(.object(members))
    }

    static let text = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Mailgate",
    "version": "1",
    "summary": "Send email over HTTP: a bearer token, a JSON message, the user's SMTP server.",
    "description": "The HTTP contract of Mailgate (it keeps that of the FastAPI service it replaced). Every error Mailgate answers is JSON: `{\"detail\": ..., \"code\": ...}`; `code` is one of `ErrorCode`. Two errors belong to no operation, so they are in `components.responses` (their status in `x-status`): `NotFound` (404, any other path) and `MethodNotAllowed` (405, another method on a path here). Errors nginx answers itself are its own HTML pages, without `code`: a path outside the shipped locations (404), a body over `client_max_body_size` (413), `limit_req` on `/token` (429), Mailgate down or too slow (502, 504)."
  },
  "servers": [
    {
      "url": "/",
      "description": "Relative: where this document is served (under `serve --base-path`, that path)."
    }
  ],
  "security": [
    {
      "bearerAuth": []
    }
  ],
  "tags": [
    {
      "name": "auth"
    },
    {
      "name": "mail"
    },
    {
      "name": "service"
    }
  ],
  "paths": {
    "/token": {
      "post": {
        "operationId": "issueToken",
        "tags": [
          "auth"
        ],
        "summary": "Log in: a bearer token for /smtp/send-email",
        "description": "OAuth2 password grant (FastAPI's OAuth2PasswordRequestForm). The token is an HS256 JWT (sub, iat, exp, ver) valid for `serve --token-ttl` (30 minutes by default). Failed logins are throttled per username and client address (5 in 15 minutes) and per username (50); the shipped nginx configuration also limits this location per client address (10 a minute, burst 5).",
        "security": [],
        "requestBody": {
          "required": true,
          "content": {
            "application/x-www-form-urlencoded": {
              "schema": {
                "$ref": "#/components/schemas/TokenRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "The credentials are right: a token.",
            "headers": {
              "Cache-Control": {
                "$ref": "#/components/headers/CacheControlNoStore"
              },
              "Pragma": {
                "$ref": "#/components/headers/PragmaNoCache"
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Token"
                }
              }
            }
          },
          "400": {
            "description": "The request itself is unusable: `Content-Length` not a number, or the body shorter than announced.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "invalid_request"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            }
          },
          "401": {
            "description": "Wrong username or password (an unknown user and a disabled one included).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "invalid_login"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "WWW-Authenticate": {
                "$ref": "#/components/headers/WWWAuthenticate"
              }
            }
          },
          "413": {
            "description": "The body is over `serve --max-body`, or (an nginx page, not JSON) over the shipped `client_max_body_size 16k`.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "body_too_large"
                          ]
                        }
                      }
                    }
                  ]
                }
              },
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "422": {
            "description": "The form lacks `username` or `password`, has a field twice, is not form-encoded UTF-8, or `grant_type` is not `password`.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/ValidationError"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "validation_error"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            }
          },
          "429": {
            "description": "Too many failed logins for this username from this client address (5 within 15 minutes) or from all addresses (50): `Retry-After` says when enough have aged out. Also (an nginx page, not JSON, without `Retry-After`) the shipped nginx `limit_req` on this location.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "login_locked"
                          ]
                        }
                      }
                    }
                  ]
                }
              },
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfterOptional"
              }
            }
          },
          "500": {
            "description": "The database failed (the reason is in the log only).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "internal_error"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            }
          },
          "503": {
            "description": "Every password-check slot (`serve --kdf-concurrency`) stayed busy for 2 s (`login_busy`), or the store (PostgreSQL) cannot be reached (`store_unavailable`).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "login_busy",
                            "store_unavailable"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfter"
              }
            }
          }
        }
      }
    },
    "/smtp/send-email": {
      "post": {
        "operationId": "sendEmail",
        "tags": [
          "mail"
        ],
        "summary": "Send one message through the user's SMTP server",
        "description": "200 means the SMTP server answered 250 to the message. All or nothing: if the server refuses any recipient, nothing is sent. With an `Idempotency-Key`, a repeat of the same request gets the first answer again (with `Idempotent-Replayed: true`) and sends nothing. A user with a send quota gets `RateLimit` and `RateLimit-Policy` (IETF httpapi rate-limit draft) on the answers of sends that were counted.",
        "parameters": [
          {
            "$ref": "#/components/parameters/IdempotencyKey"
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/SendEmailRequest"
              },
              "examples": {
                "plain": {
                  "summary": "One recipient, plain text",
                  "value": {
                    "to": "bob@example.org",
                    "subject": "Hello",
                    "message": "Hi Bob"
                  }
                },
                "rich": {
                  "summary": "Several recipients, HTML, an inline image and an attachment",
                  "value": {
                    "to": [
                      "Bob <bob@example.org>"
                    ],
                    "cc": "accounts@example.org",
                    "reply_to": "billing@example.com",
                    "subject": "Invoice 42",
                    "message": "Please find the invoice attached.",
                    "html": "<p>Please find the invoice <b>attached</b>.</p><img src=\"cid:logo\">",
                    "attachments": [
                      {
                        "filename": "invoice-42.txt",
                        "content": "SW52b2ljZSA0Mgo=",
                        "content_type": "text/plain"
                      },
                      {
                        "filename": "logo.gif",
                        "content": "R0lGODlhAQABAAAAACw=",
                        "content_id": "logo"
                      }
                    ],
                    "headers": {
                      "X-Campaign": "invoices",
                      "List-Unsubscribe": "<mailto:unsubscribe@example.com>"
                    }
                  }
                }
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "Sent: the SMTP server answered 250 to the message.",
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            },
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/SendEmailResponse"
                }
              }
            }
          },
          "400": {
            "description": "A value is unusable, or the SMTP server permanently refused a recipient (`recipient_rejected`: `detail` names every refused address with the server's reply; nothing was sent to anyone).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "invalid_recipient",
                            "invalid_request",
                            "header_not_allowed",
                            "invalid_attachment",
                            "invalid_idempotency_key",
                            "no_integration",
                            "recipient_rejected"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          },
          "401": {
            "description": "No or malformed `Authorization` header (`not_authenticated`), or a token that is bad, expired or revoked, or whose user is disabled or gone (`invalid_token`).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "not_authenticated",
                            "invalid_token"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "WWW-Authenticate": {
                "$ref": "#/components/headers/WWWAuthenticate"
              }
            }
          },
          "403": {
            "description": "A recipient outside the user's recipient policy (`mailgate user recipients`); nothing is sent.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "recipient_not_allowed"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            }
          },
          "409": {
            "description": "A request with this `Idempotency-Key` is still being sent; nothing was sent for this one.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "idempotency_key_in_flight"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfter"
              }
            }
          },
          "413": {
            "description": "The body is over `serve --max-body` (`body_too_large`; or, as an nginx page, not JSON, over the shipped `client_max_body_size 36m`), or the encoded message is over `--max-message-bytes` or the SMTP server's SIZE (`message_too_large`); nothing is sent.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "body_too_large",
                            "message_too_large"
                          ]
                        }
                      }
                    }
                  ]
                }
              },
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            },
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          },
          "422": {
            "description": "The body is not the JSON object described (FastAPI's list in `detail`, `loc` the member's path), more than `--max-recipients` addresses (`too_many_recipients`), or this `Idempotency-Key` was used before with another body (`idempotency_key_reused`).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/ValidationError"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "validation_error",
                            "too_many_recipients",
                            "idempotency_key_reused"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              }
            }
          },
          "429": {
            "description": "The send would take the user past a quota (`quota_exceeded`; `Retry-After` is when the full window ends), or the user already has `--max-in-flight-per-user` sends waiting on their SMTP server (`too_many_in_flight`). Nothing is sent.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "quota_exceeded",
                            "too_many_in_flight"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfter"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          },
          "500": {
            "description": "The database failed, or the stored integration is unusable (the reason is in the log only).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "internal_error"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            }
          },
          "502": {
            "description": "The SMTP server refused our stored login (`smtp_auth_failed`), the sender or the message (`smtp_rejected`); TLS, STARTTLS, AUTH or the protocol failed (`smtp_failed`); or the connection was lost after the message was handed over (`delivery_unknown`: it may or may not have been delivered). OAuth2 integrations: the grant is gone or was never stored (`oauth_reauthorize`: run `mailgate integration authorize USER`), or the token endpoint refused the client (`oauth_failed`).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "smtp_auth_failed",
                            "smtp_rejected",
                            "smtp_failed",
                            "delivery_unknown",
                            "oauth_reauthorize",
                            "oauth_failed"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          },
          "503": {
            "description": "The SMTP server is unavailable for now: 4xx or 421, its name not found, the connection refused or lost before the message was handed over (`smtp_unavailable`); or an OAuth2 integration's token endpoint is unreachable or failing (`oauth_unavailable`); or the store (PostgreSQL) cannot be reached (`store_unavailable`). Nothing was sent; retry after `Retry-After`.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "smtp_unavailable",
                            "oauth_unavailable",
                            "store_unavailable"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfter"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          },
          "504": {
            "description": "The SMTP server did not answer within `--smtp-timeout`, or its name did not resolve within `--smtp-connect-timeout` (`smtp_timeout`); or an OAuth2 integration's token endpoint did not answer in time (`oauth_timeout`).",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "smtp_timeout",
                            "oauth_timeout"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Idempotent-Replayed": {
                "$ref": "#/components/headers/IdempotentReplayed"
              },
              "RateLimit": {
                "$ref": "#/components/headers/RateLimit"
              },
              "RateLimit-Policy": {
                "$ref": "#/components/headers/RateLimitPolicy"
              }
            }
          }
        }
      }
    },
    "/health": {
      "get": {
        "operationId": "health",
        "tags": [
          "service"
        ],
        "summary": "Liveness: Mailgate answers and can read its store",
        "description": "No token, no SMTP traffic: monitors may poll it. The reason of a 503 is in the log only.",
        "security": [],
        "responses": {
          "200": {
            "description": "Mailgate answers and can read its store.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "required": [
                    "status"
                  ],
                  "properties": {
                    "status": {
                      "const": "ok"
                    }
                  }
                }
              }
            }
          },
          "503": {
            "description": "The store cannot be read.",
            "content": {
              "application/json": {
                "schema": {
                  "allOf": [
                    {
                      "$ref": "#/components/schemas/Error"
                    },
                    {
                      "properties": {
                        "code": {
                          "enum": [
                            "unhealthy"
                          ]
                        }
                      }
                    }
                  ]
                }
              }
            },
            "headers": {
              "Retry-After": {
                "$ref": "#/components/headers/RetryAfter"
              }
            }
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "tags": [
          "service"
        ],
        "summary": "This process's metrics in the Prometheus text format",
        "description": "No token. The shipped nginx configuration lets only 127.0.0.1 and ::1 read it (nginx itself answers others with its 403 page, which is not part of this API). Counters are per process.",
        "security": [],
        "responses": {
          "200": {
            "description": "The metrics (see the README's GET /metrics).",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "operationId": "openapi",
        "tags": [
          "service"
        ],
        "summary": "This document",
        "description": "No token. The same bytes `mailgate openapi` prints; under `serve --base-path` its `servers` entry is that path.",
        "security": [],
        "responses": {
          "200": {
            "description": "The OpenAPI 3.1 document of this service.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "required": [
                    "openapi",
                    "info",
                    "paths"
                  ],
                  "properties": {
                    "openapi": {
                      "type": "string",
                      "pattern": "^3\\.1\\.[0-9]+$"
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from `POST /token`, or one minted by `mailgate token issue`."
      }
    },
    "parameters": {
      "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes a retry safe: per user, kept `--idempotency-ttl` (24 h). The same key and body again: the first answer again (200, 400, 413, 422, 502, or a 504 after the message was handed over), with `Idempotent-Replayed: true`, and nothing is sent. Another body: 422 `idempotency_key_reused`. Still sending: 409. Anything but 1 to 255 printable ASCII characters: 400 `invalid_idempotency_key`.",
        "schema": {
          "type": "string",
          "minLength": 1,
          "maxLength": 255,
          "pattern": "^[ -~]+$"
        },
        "example": "invoice-2026-0042"
      }
    },
    "headers": {
      "WWWAuthenticate": {
        "description": "The bearer challenge.",
        "required": true,
        "schema": {
          "type": "string",
          "const": "Bearer"
        }
      },
      "RetryAfter": {
        "description": "Seconds to wait before a retry.",
        "required": true,
        "schema": {
          "type": "string",
          "pattern": "^[0-9]+$"
        }
      },
      "RetryAfterOptional": {
        "description": "Seconds to wait before a retry (Mailgate's answer; nginx's page has none).",
        "schema": {
          "type": "string",
          "pattern": "^[0-9]+$"
        }
      },
      "RateLimit": {
        "description": "For a user with a send quota: the window closest to its limit, `\"minute\";r=7;t=42` (`r` recipients remaining, `t` seconds to its end).",
        "schema": {
          "type": "string"
        }
      },
      "RateLimitPolicy": {
        "description": "For a user with a send quota: every window, `\"minute\";q=10;w=60, \"day\";q=500;w=86400`.",
        "schema": {
          "type": "string"
        }
      },
      "IdempotentReplayed": {
        "description": "On an answer replayed for a repeated `Idempotency-Key`: nothing was sent this time.",
        "schema": {
          "type": "string",
          "const": "true"
        }
      },
      "Allow": {
        "description": "The methods the path has.",
        "required": true,
        "schema": {
          "type": "string"
        }
      },
      "CacheControlNoStore": {
        "required": true,
        "schema": {
          "type": "string",
          "const": "no-store"
        }
      },
      "PragmaNoCache": {
        "schema": {
          "type": "string",
          "const": "no-cache"
        }
      }
    },
    "responses": {
      "NotFound": {
        "x-status": 404,
        "description": "A path that is not one of the routes. Behind the shipped nginx configuration, a path outside its locations gets nginx's own 404 page instead.",
        "content": {
          "application/json": {
            "schema": {
              "allOf": [
                {
                  "$ref": "#/components/schemas/Error"
                },
                {
                  "properties": {
                    "code": {
                      "enum": [
                        "not_found"
                      ]
                    }
                  }
                }
              ]
            }
          }
        }
      },
      "MethodNotAllowed": {
        "x-status": 405,
        "description": "A route's path with another method; `Allow` names the route's method.",
        "content": {
          "application/json": {
            "schema": {
              "allOf": [
                {
                  "$ref": "#/components/schemas/Error"
                },
                {
                  "properties": {
                    "code": {
                      "enum": [
                        "method_not_allowed"
                      ]
                    }
                  }
                }
              ]
            }
          }
        },
        "headers": {
          "Allow": {
            "$ref": "#/components/headers/Allow"
          }
        }
      }
    },
    "schemas": {
      "TokenRequest": {
        "type": "object",
        "required": [
          "username",
          "password"
        ],
        "properties": {
          "username": {
            "type": "string"
          },
          "password": {
            "type": "string",
            "format": "password"
          },
          "grant_type": {
            "type": "string",
            "pattern": "^password$",
            "description": "Optional; when present, exactly `password`."
          },
          "scope": {
            "type": "string",
            "description": "Accepted and ignored."
          }
        },
        "additionalProperties": {
          "type": "string"
        },
        "description": "Other fields (OAuth2's `client_id`, `client_secret`) are accepted and ignored. Every field at most once: a name given twice is 422."
      },
      "Token": {
        "type": "object",
        "required": [
          "access_token",
          "token_type",
          "expires_in"
        ],
        "properties": {
          "access_token": {
            "type": "string",
            "description": "An HS256 JWT: `Authorization: Bearer <it>`."
          },
          "token_type": {
            "const": "bearer"
          },
          "expires_in": {
            "type": "integer",
            "minimum": 1,
            "description": "Seconds until it expires."
          }
        }
      },
      "Address": {
        "type": "string",
        "examples": [
          "bob@example.org",
          "Bob <bob@example.org>"
        ]
      },
      "Addresses": {
        "description": "One address or an array of them, each optionally with a display name (`Bob <bob@example.org>`); an unusable one is 400 `invalid_recipient`.",
        "oneOf": [
          {
            "$ref": "#/components/schemas/Address"
          },
          {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Address"
            }
          }
        ]
      },
      "Attachment": {
        "type": "object",
        "required": [
          "filename",
          "content"
        ],
        "properties": {
          "filename": {
            "type": "string",
            "minLength": 1,
            "pattern": "^[^\\r\\n\\u0000/\\\\]+$",
            "description": "Without CR, LF, NUL, `/` or `\\`; non-ASCII names are written in RFC 2231 and RFC 2047 forms. Missing or unusable: 400 `invalid_attachment`."
          },
          "content": {
            "type": "string",
            "contentEncoding": "base64",
            "description": "The file's bytes in standard base64 (line breaks allowed); anything else is 400 `invalid_attachment`."
          },
          "content_type": {
            "type": [
              "string",
              "null"
            ],
            "description": "Default: from the file name's extension, else `application/octet-stream`."
          },
          "content_id": {
            "type": [
              "string",
              "null"
            ],
            "description": "Makes the part inline, for `<img src=\"cid:...\">` in `html`."
          }
        }
      },
      "SendEmailRequest": {
        "type": "object",
        "description": "Unknown members are ignored; `null` counts as absent for the optional ones. At most `--max-recipients` (50) addresses in `to`, `cc` and `bcc` together.",
        "required": [
          "to",
          "subject",
          "message"
        ],
        "properties": {
          "to": {
            "description": "One address or an array of them, each optionally with a display name (`Bob <bob@example.org>`); an unusable one is 400 `invalid_recipient`. At least one.",
            "oneOf": [
              {
                "$ref": "#/components/schemas/Address"
              },
              {
                "type": "array",
                "minItems": 1,
                "items": {
                  "$ref": "#/components/schemas/Address"
                }
              }
            ]
          },
          "cc": {
            "anyOf": [
              {
                "$ref": "#/components/schemas/Addresses"
              },
              {
                "type": "null"
              }
            ]
          },
          "bcc": {
            "anyOf": [
              {
                "$ref": "#/components/schemas/Addresses"
              },
              {
                "type": "null"
              }
            ],
            "description": "In the envelope only, never in a header."
          },
          "reply_to": {
            "anyOf": [
              {
                "$ref": "#/components/schemas/Addresses"
              },
              {
                "type": "null"
              }
            ],
            "description": "Becomes `Reply-To`."
          },
          "subject": {
            "type": "string",
            "pattern": "^[^\\r\\n\\u0000]*$",
            "description": "Without CR, LF or NUL; RFC 2047 when not ASCII."
          },
          "message": {
            "type": "string",
            "pattern": "^[^\\u0000]*$",
            "description": "The plain-text body (no NUL)."
          },
          "html": {
            "type": [
              "string",
              "null"
            ],
            "pattern": "^[^\\u0000]*$",
            "description": "An HTML alternative to `message` (no NUL)."
          },
          "attachments": {
            "type": [
              "array",
              "null"
            ],
            "items": {
              "$ref": "#/components/schemas/Attachment"
            }
          },
          "headers": {
            "type": [
              "object",
              "null"
            ],
            "additionalProperties": {
              "type": "string"
            },
            "description": "Extra header fields. Allowed names (any case): `X-*`, `List-Unsubscribe`, `List-Unsubscribe-Post`, `List-Id`, `In-Reply-To`, `References`, `Auto-Submitted`, `Precedence`, `Importance`, `Priority`. Any other name, or a value with CR, LF or NUL, is 400 `header_not_allowed`."
          }
        }
      },
      "SendEmailResponse": {
        "type": "object",
        "required": [
          "status",
          "message_id",
          "recipients"
        ],
        "properties": {
          "status": {
            "const": "Email sent successfully"
          },
          "message_id": {
            "type": "string",
            "pattern": "^<.+>$",
            "description": "The Message-ID header's value."
          },
          "recipients": {
            "type": "integer",
            "minimum": 1,
            "description": "How many addresses the envelope held."
          }
        }
      },
      "ErrorCode": {
        "type": "string",
        "description": "The stable key a program switches on: never renamed; new ones may be added.",
        "enum": [
          "not_authenticated",
          "invalid_token",
          "invalid_login",
          "login_locked",
          "login_busy",
          "validation_error",
          "invalid_request",
          "invalid_recipient",
          "body_too_large",
          "not_found",
          "method_not_allowed",
          "no_integration",
          "too_many_in_flight",
          "quota_exceeded",
          "recipient_not_allowed",
          "recipient_rejected",
          "smtp_rejected",
          "smtp_unavailable",
          "smtp_timeout",
          "smtp_failed",
          "too_many_recipients",
          "header_not_allowed",
          "invalid_attachment",
          "message_too_large",
          "invalid_idempotency_key",
          "idempotency_key_reused",
          "idempotency_key_in_flight",
          "smtp_auth_failed",
          "delivery_unknown",
          "oauth_reauthorize",
          "oauth_failed",
          "oauth_unavailable",
          "oauth_timeout",
          "store_unavailable",
          "unhealthy",
          "internal_error"
        ]
      },
      "Error": {
        "type": "object",
        "description": "Every error Mailgate answers: FastAPI's `detail` (text for people: it may be reworded, and for SMTP failures it quotes the server) and a stable `code`.",
        "required": [
          "detail",
          "code"
        ],
        "properties": {
          "detail": {
            "type": "string"
          },
          "code": {
            "$ref": "#/components/schemas/ErrorCode"
          }
        }
      },
      "ValidationError": {
        "type": "object",
        "description": "Every 422: FastAPI's list of problems in `detail`, and a stable `code`.",
        "required": [
          "detail",
          "code"
        ],
        "properties": {
          "detail": {
            "type": "array",
            "minItems": 1,
            "items": {
              "$ref": "#/components/schemas/ValidationProblem"
            }
          },
          "code": {
            "$ref": "#/components/schemas/ErrorCode"
          }
        }
      },
      "ValidationProblem": {
        "type": "object",
        "required": [
          "type",
          "loc",
          "msg"
        ],
        "properties": {
          "type": {
            "type": "string",
            "examples": [
              "missing",
              "string_type",
              "json_invalid"
            ]
          },
          "loc": {
            "type": "array",
            "items": {
              "type": [
                "string",
                "integer"
              ]
            },
            "examples": [
              [
                "body",
                "attachments",
                2,
                "content"
              ]
            ]
          },
          "msg": {
            "type": "string"
          }
        }
      }
    }
  }
}
"""#
}
