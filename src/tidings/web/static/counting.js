/* How each platform counts the length of a post, so the composer's counters agree with the
 * server's checks (tidings.channels.providers: each provider's text_length and its
 * "text_counting" name in /api/providers). Kept in step with the Python by a browser test.
 *
 *   code_points  every Unicode code point counts 1 (Python's len)
 *   utf16        UTF-16 code units (Telegram, TikTok: an emoji outside the BMP counts 2)
 *   graphemes    user-perceived characters (Bluesky)
 *   mastodon     graphemes, every URL counts 23, "@user@domain" counts as "@user"
 *   x_weighted   twitter-text v3: Latin and general punctuation weigh 1, other characters 2,
 *                an emoji sequence 2, every URL (with or without a scheme) 23
 */
(function () {
  "use strict";

  var WORD = "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
  var segmenter = typeof Intl !== "undefined" && Intl.Segmenter
    ? new Intl.Segmenter("en", { granularity: "grapheme" }) : null;

  function graphemes(text) {
    if (!segmenter) return Array.from(text);
    var out = [];
    for (var s of segmenter.segment(text)) out.push(s.segment);
    return out;
  }

  // ---- X (twitter-text v3 weighting) -------------------------------------------------------
  var X_SCALE = 100;
  var X_DEFAULT = 200;
  var X_LIGHT = [[0, 4351], [8192, 8205], [8208, 8223], [8242, 8247]];
  var X_URL_WEIGHT = 23 * X_SCALE;
  var X_EMOJI = 200;
  var TLDS = "com|net|org|edu|gov|mil|int|io|co|ai|app|dev|me|ly|gl|tv|fm|to|info|biz|xyz|news|blog|" +
    "shop|site|online|tech|uk|us|ca|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|pt|ie|jp|cn|kr|in|" +
    "au|nz|br|mx|ar|ru|ua|eu|asia|social|link|page|art|so|sh|gg|cc|id|im";
  var X_URL = new RegExp(
    "(?<!(?:" + WORD + "|[@.\\-/]))(?:https?://[^\\s<>\"]+|(?:www\\.)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+" +
    "(?:" + TLDS + ")(?!(?:" + WORD + "|-))(?:[/?#][^\\s<>\"]*)?)", "giu");
  var TRAILING = ".,;:!?'\")]";
  var EMOJI = /\p{Extended_Pictographic}|\p{Regional_Indicator}/u;

  function codePointWeight(ch) {
    var code = ch.codePointAt(0);
    for (var i = 0; i < X_LIGHT.length; i++) {
      if (code >= X_LIGHT[i][0] && code <= X_LIGHT[i][1]) return X_SCALE;
    }
    return X_DEFAULT;
  }

  function segmentWeight(text) {
    var total = 0;
    graphemes(text).forEach(function (cluster) {
      if (EMOJI.test(cluster)) { total += X_EMOJI; return; }
      for (var ch of cluster) total += codePointWeight(ch);
    });
    return total;
  }

  function rstrip(url) {
    var end = url.length;
    while (end > 0 && TRAILING.indexOf(url[end - 1]) >= 0) end--;
    return url.slice(0, end);
  }

  function xWeighted(text) {
    text = text.normalize("NFC");
    var total = 0;
    var position = 0;
    X_URL.lastIndex = 0;
    var match;
    while ((match = X_URL.exec(text)) !== null) {
      var start = match.index;
      total += segmentWeight(text.slice(position, start)) + X_URL_WEIGHT;
      position = start + rstrip(match[0]).length;
    }
    total += segmentWeight(text.slice(position));
    return Math.floor(total / X_SCALE);
  }

  // ---- Mastodon ----------------------------------------------------------------------------
  var M_URL = new RegExp("(?<!(?:" + WORD + "|/))https?://[^\\s<>\"]+", "giu");
  var M_MENTION = new RegExp(
    "(?<!(?:" + WORD + "|@))@([a-zA-Z0-9_]+(?:[a-zA-Z0-9_.\\-]+[a-zA-Z0-9_])?)@(?:" + WORD + "|[.\\-])+" + WORD, "gu");

  function mastodon(text) {
    text = text.replace(M_URL, "x".repeat(23));
    text = text.replace(M_MENTION, function (_, user) { return "@" + user; });
    return graphemes(text).length;
  }

  var COUNTERS = {
    code_points: function (text) { return Array.from(text).length; },
    utf16: function (text) { return text.length; },
    graphemes: function (text) { return graphemes(text).length; },
    mastodon: mastodon,
    x_weighted: xWeighted
  };

  /** The length of ``text`` counted the ``kind`` way (unknown kinds: code points). */
  function count(kind, text) {
    return (COUNTERS[kind] || COUNTERS.code_points)(text || "");
  }

  window.TidingsCounting = { count: count, kinds: Object.keys(COUNTERS) };
})();
