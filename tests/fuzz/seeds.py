#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (run from anywhere; the
files are committed, so this only needs running when seeds change).

http/  requests, including a request-smuggling/desync set: CL.TE, TE.CL,
       double Content-Length, obs-fold, bare LF, chunk-size overflow, chunk
       data without CRLF, TE on HTTP/1.0, HTTP/2.0 and 0.9 request lines,
       absolute-form targets, missing or repeated Host, pipelines.  The first
       byte of each file seeds how fuzz_http cuts the input into reads
       (odd: one read; even: small pieces).
xff/   "TRUSTED\\nPEER\\nFIELD..." inputs for fuzz_xff.
body/  Content-Type selector byte + body for fuzz_body.
json/  JSONTestSuite-style y_/n_/i_ texts for fuzz_json.
jscan/ the json/ texts plus webhook-like objects (nested fields, repeated
       and escaped keys, integer forms) for fuzz_jscan.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("latin-1"))


H = "Host: x\r\n"
P = "POST /hooks/T HTTP/1.1\r\n"
SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

http = {
    "get": "GET /hooks/T?a=1&b=2 HTTP/1.1\r\n" + H + "\r\n",
    "post_cl": P + H + "Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
    "post_chunked": P + H + "Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
    "chunk_ext_trailer": P + H + "Transfer-Encoding: chunked\r\n\r\n2;x=\"y\"\r\n{}\r\n0\r\nX-T: 1\r\n\r\n",
    "pipeline3": (P + H + "Content-Length: 2\r\n\r\n{}") * 3,
    "keepalive10": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "expect100": P + H + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    "head": "HEAD /hooks/T HTTP/1.1\r\n" + H + "\r\n",
    "upgrade": "GET / HTTP/1.1\r\n" + H + "Connection: upgrade\r\nUpgrade: h2c\r\n\r\nPRI",
    "connect": "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    "options_star": "OPTIONS * HTTP/1.1\r\n" + H + "\r\n",
    "absolute_form": "POST http://127.0.0.1:8080/hooks/T?q HTTP/1.1\r\n" + H + "Content-Length: 2\r\n\r\n{}",
    "absolute_form_no_path": "GET https://h?x HTTP/1.1\r\n" + H + "\r\n",
    "xff_many": "GET / HTTP/1.1\r\n" + H + "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8, ::1\r\n\r\n",
    "many_headers": "GET / HTTP/1.1\r\n" + H + "".join("X-%d: v\r\n" % i for i in range(99)) + "\r\n",
    "too_many_headers": "GET / HTTP/1.1\r\n" + H + "".join("X-%d: v\r\n" % i for i in range(101)) + "\r\n",
    "big_header": "GET / HTTP/1.1\r\n" + H + "X-Big: " + "v" * 17000 + "\r\n\r\n",
    "body_over_limit": P + H + "Content-Length: 5000\r\n\r\n" + "a" * 5000,
    "chunked_over_limit": P + H + "Transfer-Encoding: chunked\r\n\r\n" + ("400\r\n" + "a" * 1024 + "\r\n") * 5 + "0\r\n\r\n",
    "utf8_value": "GET / HTTP/1.1\r\n" + H + "X-N: caf\xc3\xa9\r\n\r\n",
    # --- request smuggling / desync
    "desync_cl_te": P + H + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX" + SMUGGLED,
    "desync_te_cl": P + H + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + SMUGGLED,
    "desync_double_cl": P + H + "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}" + SMUGGLED,
    "desync_same_cl_twice": P + H + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED,
    "desync_cl_list": P + H + "Content-Length: 2, 2\r\n\r\n{}" + SMUGGLED,
    "desync_cl_sign": P + H + "Content-Length: +2\r\n\r\n{}" + SMUGGLED,
    "desync_cl_space": P + H + "Content-Length: 2 3\r\n\r\n{}" + SMUGGLED,
    "desync_cl_huge": P + H + "Content-Length: 99999999999999999999999\r\n\r\n{}",
    "desync_te_space_colon": P + H + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_te_obsfold": P + H + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_obsfold": P + H + "X-A: a\r\n\tb\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED,
    "desync_te_xchunked": P + H + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_te_chunked_identity": P + H + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_te_twice": P + H + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_te_http10": "POST /hooks/T HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_te_vtab": P + H + "Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "desync_bare_lf_headers": "POST /hooks/T HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}" + SMUGGLED,
    "desync_bare_cr": P + H + "X-A: a\rContent-Length: 40\r\nContent-Length: 2\r\n\r\n{}",
    "desync_bare_lf_chunk": P + H + "Transfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n" + SMUGGLED,
    "desync_chunk_overflow": P + H + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n{}\r\n0\r\n\r\n",
    "desync_chunk_size_space": P + H + "Transfer-Encoding: chunked\r\n\r\n2 \r\n{}\r\n0\r\n\r\n" + SMUGGLED,
    "desync_chunk_size_neg": P + H + "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
    "desync_chunk_size_0x": P + H + "Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "desync_chunk_no_crlf": P + H + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n" + SMUGGLED,
    "desync_chunk_ext_lf": P + H + "Transfer-Encoding: chunked\r\n\r\n2;a\n{}\r\n0\r\n\r\n" + SMUGGLED,
    "desync_empty_header_name": P + H + ": v\r\nContent-Length: 2\r\n\r\n{}",
    "desync_empty_name_first": P + ": v\r\n" + H + "\r\n",
    "desync_nul_value": P + H + "X-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "desync_nul_name": P + H + "X-\x00A: a\r\n\r\n",
    "desync_ctl_name": P + H + "X\x01A: a\r\n\r\n",
    "desync_no_host": "POST /hooks/T HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    "desync_two_hosts": P + "Host: a\r\nHost: b\r\n\r\n",
    "desync_http2": "POST /hooks/T HTTP/2.0\r\n" + H + "\r\n",
    "desync_http09": "GET /hooks/T\r\n\r\n",
    "desync_http12": "GET / HTTP/1.2\r\n" + H + "\r\n",
    "desync_h2_preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "desync_space_in_url": "GET /a b HTTP/1.1\r\n" + H + "\r\n",
    "desync_lower_method": "post /hooks/T HTTP/1.1\r\n" + H + "\r\n",
    "desync_double_space": "GET  / HTTP/1.1\r\n" + H + "\r\n",
    "desync_leading_crlf": "\r\n\r\nGET / HTTP/1.1\r\n" + H + "\r\n",
    "desync_trailer_cl": P + H + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 40\r\n\r\n" + SMUGGLED,
    "desync_pipelined_after_error": P + H + "Content-Length: x\r\n\r\n" + SMUGGLED,
    "desync_connection_close_te": P + H + "Connection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}
for name, data in http.items():
    write("http", name, "\x01" + data)
    if name.startswith("desync") or name in ("post_chunked", "pipeline3"):
        write("http", name + "_split", "\x02" + data)

xff = {
    "one": "10.0.0.0/8\n10.0.0.1\n192.0.2.1",
    "chain": "10.0.0.0/8,::1\n10.0.0.1\n192.0.2.9, 192.0.2.1\n10.0.0.8, 10.0.0.7",
    "forged_first": "127.0.0.5/32\n127.0.0.5\n127.0.0.2\n127.0.0.3",
    "ports": "::/0\n::1\n[2001:db8::1]:443, 192.0.2.1:80, [::ffff:1.2.3.4]",
    "empty_elems": "::1\n::1\n , ,,\n\n",
    "garbage": "10.0.0.0/8\n10.0.0.1\n192.0.2.1, junk\"",
    "bad_cidr": "10.0.0.0/33,300.1.1.1,1.2.3.4/-1,::/129,01.2.3.4",
    "v6_cidrs": "2001:db8::/32,fe80::/10,::ffff:0:0/96\n2001:db8::5\nfe80::1, 2001:db8::7",
    "untrusted_peer": "10.0.0.0/8\n192.0.2.99\n10.0.0.1",
    "long": "10.0.0.0/8\n10.0.0.1\n" + "10.0.0.9, " * 800 + "192.0.2.1",
    "zone": "fe80::/10\nfe80::1%eth0\nfe80::2%25eth0",
    "mapped_peer": "127.0.0.0/8\n::ffff:127.0.0.1\n198.51.100.1",
}
for name, data in xff.items():
    write("xff", name, data)

J, FORM, TEXT, NONE, MULTI, VND = "\x00", "\x01", "\x02", "\x03", "\x06", "\x07"
body = {
    "json_ok": J + '{"id":"A1","n":1.5,"i":3,"b":true,"o":{},"a":[],"c":{"email":"x@y"},"x":null}',
    "json_int_float": J + '{"id":"A","i":3.0,"n":1e308}',
    "json_inf": J + '{"id":"A","i":1e999}',
    "json_big_int": J + '{"id":"A","i":9223372036854775807,"n":-9223372036854775808}',
    "json_over_int": J + '{"id":"A","i":9223372036854775808}',
    "json_missing": J + '{"n":1}',
    "json_wrong_type": J + '{"id":1}',
    "json_array_top": J + '[1,2,3]',
    "json_empty_array_top": J + '[]',
    "json_scalar": J + '"x"',
    "json_hex": J + '{"id":"A","n":0x10}',
    "json_nan": J + '{"id":"A","n":NaN}',
    "json_trailing": J + '{"id":"A"} x',
    "json_deep": J + '{"id":"A","o":' + '{"a":' * 300 + '1' + '}' * 301,
    "json_bad_utf8": J + '{"id":"\xff\xfe"}',
    "json_escapes": J + '{"id":"\\u0000\\ud83d\\ude00\\n","x":"\\ud800"}',
    "json_dup_keys": J + '{"id":"A","id":"B"}',
    "json_dotted_key": J + '{"id":"A","c.email":"literal"}',
    "json_c_not_object": J + '{"id":"A","c":"str"}',
    "form_ok": FORM + "id=A1&n=1.5&i=3&b=true&c.email=x%40y",
    "form_bad_int": FORM + "id=A&i=3.5",
    "form_pct": FORM + "id=%41%zz%&n=+1e3&b=yes",
    "form_json_inside": FORM + '{"id":"A"}',
    "form_repeat": FORM + "id=A&id=B&a=1&a=2",
    "form_empty": FORM,
    "text_json_looking": TEXT + '{"id":"A"}',
    "text_plain": TEXT + "hello",
    "none_blank": NONE + "   \n",
    "none_json": NONE + '{"id":"A"}',
    "multipart_ok": MULTI + '--XyZ\r\nContent-Disposition: form-data; name="id"\r\n\r\nA1\r\n'
                    '--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n'
                    'Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n',
    "multipart_broken": MULTI + '--XyZ\r\nContent-Disposition: form-data; name="id"\r\n\r\nA1',
    "vnd_json": VND + '{"id":"A"}',
}
for name, data in body.items():
    write("body", name, data)

# json/  JSON texts for fuzz_json (JSON -> Lua -> JSON): JSONTestSuite-style
#        y_ (accepted) and n_ (refused) cases, i_ for our documented choices.
json_seeds = {
    "y_empty_array": "[]", "y_empty_object": "{}", "y_nested_empties": '[[],{},[[]],{"a":[]}]',
    "y_ws": " \t\n\r[1] \n", "y_int_max": "9223372036854775807", "y_int_min": "-9223372036854775808",
    "y_int_2p53_plus1": "9007199254740993", "y_int_15": "123456789012345",
    "y_int_over": "9223372036854775808", "y_minus_zero": "-0", "y_float_int": "[1.0,2.50,-3e0]",
    "y_small": "[0.1,1e-300,5e-324,1e-400,2.2250738585072014e-308]",
    "y_big": "1.7976931348623157e308", "y_exp": "[1e2,1E+2,1e-2,0e0,-0.0e-0]",
    "y_strings": '["x","\\u00e9","\\ud83d\\ude00","a\\/b","\\"\\\\\\b\\f\\n\\r\\t","\\u0000"]',
    "y_utf8_raw": '["\xc3\xa9","\xe2\x82\xac","\xf0\x9f\x98\x80","\xf4\x8f\xbf\xbf","\x7f"]',
    "y_literals": "[true,false,null]", "y_dup_keys": '{"a":1,"a":[2]}',
    "y_object": '{"id":"A1","n":1.5,"o":{"k":[1,{"x":null}]},"e":""}',
    "y_depth_200": "[" * 200 + "]" * 200,
    "y_sparse_like": '{"1":1,"3":3}', "y_numeric_keys": '{"1":"a","2":"b"}',
    "i_lone_high": '"\\ud800"', "i_lone_low": '"\\udc00"', "i_high_then_char": '"\\ud800\\u0041"',
    "n_hex": "0x10", "n_nan": "NaN", "n_inf": "Infinity", "n_minus_inf": "-Infinity",
    "n_overflow": '{"times":1e999}', "n_leading_zero": "01", "n_minus_leading_zero": "-01",
    "n_trailing_comma_array": "[1,]", "n_trailing_comma_object": '{"a":1,}',
    "n_double_comma": "[1,,2]", "n_missing_comma": "[1 2]", "n_missing_colon": '{"a" 1}',
    "n_unquoted_key": "{a:1}", "n_single_quote": "'a'", "n_bad_escape": '"\\x"',
    "n_short_u": '"\\u12"', "n_control_char": '"a\x1fb"', "n_raw_newline": '"a\nb"',
    "n_bad_utf8": '"\xff"', "n_utf8_surrogate": '"\xed\xa0\x80"', "n_overlong": '"\xc0\xaf"',
    "n_past_max": '"\xf4\x90\x80\x80"', "n_cut_utf8": '"\xe2\x82"', "n_empty": "",
    "n_blank": "   ", "n_open": "[", "n_close": "]", "n_trailing_garbage": "[1]x",
    "n_two_values": "{}{}", "n_dot_first": ".5", "n_dot_last": "1.", "n_dot_exp": "1.e5",
    "n_exp_only": "1e", "n_plus": "+1", "n_minus": "-", "n_tru": "tru", "n_truex": "truex",
    "n_nul": "nul", "n_unterminated": '"abc', "n_bom": "\xef\xbb\xbf{}",
    "n_depth_201": "[" * 201 + "]" * 201, "n_unclosed_object": '{"a":1',
    "n_nul_byte": '"a\x00b"',
}
for name, data in json_seeds.items():
    write("json", name, data)

# jscan/  the JSON texts again, plus objects as webhooks send them, for
# fuzz_jscan (core/jscan.c against the decoder)
jscan_seeds = dict(json_seeds)
jscan_seeds.update({
    "o_order": '{"order_id":"A1","amount":12.5}',
    "o_nested": '{"order_id":"A2","qty":3,"customer":{"id":"c1","vip":true},"tags":[1,"2",{"t":null}]}',
    "o_repeated": '{"a":1,"a":null,"a":{"b":2}}',
    "o_escaped_key": '{"\\u0061":1,"a":2}',
    "o_ints": '{"a":1e3,"b":-0,"c":7.0,"d":9223372036854775807,"e":-9223372036854775808,'
              '"f":9223372036854775808,"g":1.5,"h":12345678901234567890,"i":1E-2}',
    "o_ws": ' \t\r\n{ "a" : [ 1 , 2 ] , "b" : { } }\n',
    "o_unicode": '{"k\\u00e9":"\\ud83d\\ude00","\xc3\xa9":"\xf0\x9f\x98\x80"}',
    "n_obj_overflow": '{"a":1e999}',
    "n_obj_trailing": '{"a":1} x',
})
for name, data in jscan_seeds.items():
    write("jscan", name, data)

# door/: "SIG\nTS\nID\nBODY" for fuzz_door (every scheme reads SIG as its
# signature or credential header, TS as its timestamp, ID as webhook-id)
door_seeds = {
    "standard": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,xx\n1700000000\nmsg_1\n{\"id\":1}",
    "stripe": "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=00\n\n\n{\"id\":\"evt\"}",
    "stripe_spaces": " t = 1 , , v1=zz ,v1=\n\n\n",
    "github": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\n\n\nHello, World!",
    "slack": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503\n1531420618\n\ntoken=x",
    "basic": "Basic dXNlcjpzZWNyZXQ=\n\n\n",
    "bearer": "bEaReR   secret  \n\n\n",
    "jwt_hs": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJpc3MiLCJhdWQiOlsiYXVkIl0sImV4cCI6NDEwMjQ0NDgwMH0.AAAA\n\n\n",
    "jwt_bad": "Bearer a.b.\n\n\n",
    "jwt_array": "Bearer WzFd.WzFd.\n\n\n",
    "empty": "",
    "ts_huge": "v1,AAAA\n" + "9" * 80 + "\nid\n",
    "body_nested": "x\n1\n2\n{\"id\":{\"id\":[1,{\"id\":\"\\ud83d\\ude00\"}]},\"id\":12345678901234.56}",
}
for name, data in door_seeds.items():
    write("door", name, data)
