package jobs.jvm;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One JSON body read once into a tree: objects as ordered maps, arrays as lists, strings, booleans,
 * numbers (Long or BigInteger for integers, Double otherwise) and {@link #NULL}. The syntax is
 * Spark's from_json's (single quotes, NaN and Infinity allowed), and {@link #text} writes a value
 * as Spark writes a non-string value it reads as a string (Jackson's generator, compact).
 *
 * <p>While it reads, it notes what the residency test needs even of a body it cannot finish: every
 * value of the top-level "origin_country" and of "lat" and "lon" in the top-level "payload" object,
 * each occurrence when a key is repeated (the tree keeps the last, as Spark's from_json does).
 */
final class JsonTree {
  /** JSON null, distinct from an absent key. */
  static final Object NULL = new Object();

  static final JsonFactory FACTORY =
      JsonFactory.builder()
          .enable(JsonReadFeature.ALLOW_SINGLE_QUOTES)
          .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
          .build();

  final List<Object> origins = new ArrayList<>();
  final List<Object> lats = new ArrayList<>();
  final List<Object> lons = new ArrayList<>();
  boolean duplicateKey;
  boolean malformed;  // not JSON, or its root is not an object
  Map<String, Object> root;  // null when malformed, or when only scanned
  private final boolean build;

  /**
   * Reads {@code text}; never throws for bad input (see {@link #malformed}). With {@code build}
   * false (a body too large to decode) it only notes what the residency test needs.
   */
  JsonTree(String text, boolean build) {
    this.build = build;
    try (JsonParser p = FACTORY.createParser(text)) {
      if (p.nextToken() != JsonToken.START_OBJECT) {
        malformed = true;
        return;
      }
      root = object(p, 0);
    } catch (IOException | RuntimeException | StackOverflowError e) {
      malformed = true;
      root = null;
    }
  }

  // level 0: the root; 1: the root's "payload"; 2: anything deeper
  private Map<String, Object> object(JsonParser p, int level) throws IOException {
    Map<String, Object> map = new LinkedHashMap<>();
    while (p.nextToken() == JsonToken.FIELD_NAME) {
      String key = p.currentName();
      JsonToken token = p.nextToken();
      int inner = level == 0 && key.equals("payload") ? 1 : 2;
      boolean noted = level == 0 ? key.equals("origin_country")
          : level == 1 && (key.equals("lat") || key.equals("lon"));
      if (!build && !noted && inner == 2) {
        p.skipChildren();
        continue;
      }
      Object value = value(p, token, inner);
      if (level == 0 && key.equals("origin_country")) {
        origins.add(value);
      } else if (level == 1 && key.equals("lat")) {
        lats.add(value);
      } else if (level == 1 && key.equals("lon")) {
        lons.add(value);
      }
      if (build && map.put(key, value) != null) {
        duplicateKey = true;
      }
    }
    return build ? map : null;
  }

  private Object value(JsonParser p, JsonToken token, int level) throws IOException {
    switch (token) {
      case START_OBJECT:
        return object(p, level);
      case START_ARRAY:
        List<Object> list = new ArrayList<>();
        for (JsonToken t = p.nextToken(); t != JsonToken.END_ARRAY; t = p.nextToken()) {
          list.add(value(p, t, 2));
        }
        return list;
      case VALUE_STRING:
        return p.getText();
      case VALUE_NUMBER_INT:
        return p.getNumberType() == JsonParser.NumberType.BIG_INTEGER
            ? p.getBigIntegerValue()
            : (Object) p.getLongValue();
      case VALUE_NUMBER_FLOAT:
        return p.getDoubleValue();
      case VALUE_TRUE:
        return Boolean.TRUE;
      case VALUE_FALSE:
        return Boolean.FALSE;
      case VALUE_NULL:
        return NULL;
      default:
        throw new IOException("unexpected token " + token);
    }
  }

  /**
   * A value as Spark reads it into a string: a string as it is, anything else as its JSON text;
   * null for JSON null.
   */
  static String text(Object value) {
    if (value == NULL || value == null) {
      return null;
    }
    if (value instanceof String s) {
      return s;
    }
    StringWriter out = new StringWriter();
    try (JsonGenerator g = FACTORY.createGenerator(out)) {
      write(g, value);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toString();
  }

  static void write(JsonGenerator g, Object value) throws IOException {
    if (value == NULL) {
      g.writeNull();
    } else if (value instanceof String s) {
      g.writeString(s);
    } else if (value instanceof Long l) {
      g.writeNumber(l);
    } else if (value instanceof BigInteger b) {
      g.writeNumber(b);
    } else if (value instanceof Double d) {
      g.writeNumber(d);
    } else if (value instanceof Boolean b) {
      g.writeBoolean(b);
    } else if (value instanceof List<?> list) {
      g.writeStartArray();
      for (Object v : list) {
        write(g, v);
      }
      g.writeEndArray();
    } else {
      g.writeStartObject();
      for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
        g.writeFieldName((String) e.getKey());
        write(g, e.getValue());
      }
      g.writeEndObject();
    }
  }

  /** A coordinate as the residency test reads it: a number, or a string that reads as one. */
  static Double coordinate(Object value) {
    if (value instanceof Number n) {
      return n.doubleValue();
    }
    if (value instanceof String s) {
      try {
        return Double.parseDouble(s.trim());
      } catch (NumberFormatException e) {
        return null;
      }
    }
    return null;
  }
}
