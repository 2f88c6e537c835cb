// What one GraphQL operation may ask for, checked before anything executes: depth, aliases and
// tokens (graphql-armor's plugins), reported as one QUERY_TOO_COMPLEX error with no data; and how
// many requests an operation counts for against the tenant's rate limit (its root fields).
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import {
  GraphQLError,
  Kind,
  parse,
  type DocumentNode,
  type FragmentDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Config } from '../config.js';

export interface OperationLimits {
  maxDepth: number;
  maxAliases: number;
  maxTokens: number;
}

export function operationLimits(config: Config): OperationLimits {
  return { maxDepth: config.graphqlMaxDepth, maxAliases: config.graphqlMaxAliases, maxTokens: config.graphqlMaxTokens };
}

export const QUERY_TOO_COMPLEX = 'QUERY_TOO_COMPLEX';

export function queryTooComplex(message: string): GraphQLError {
  return new GraphQLError(message.replace(/^Syntax Error: /, ''), {
    extensions: { code: QUERY_TOO_COMPLEX, http: { status: 400 } },
  });
}

const isTooComplex = (error: GraphQLError) => error.extensions['code'] === QUERY_TOO_COMPLEX;

/**
 * The armor plugins, set to report rather than throw, and a last step that keeps only the first
 * complexity error: a refused document gets one error that says why, not a list of everything
 * else that is also wrong with it.
 */
export function operationLimitPlugins(limits: OperationLimits): Plugin[] {
  const report = (context: unknown, error: GraphQLError) => {
    (context as { reportError(e: GraphQLError): void }).reportError(queryTooComplex(error.message));
  };
  const onlyTheComplexityError: Plugin = {
    onValidate: () => ({ result, setResult }) => {
      // envelop types validation results as any, to fit every graphql version; graphql 16's are these.
      const first = (result as readonly GraphQLError[]).find(isTooComplex);
      if (first) setResult([first]);
    },
  };
  return [
    maxTokensPlugin({
      n: limits.maxTokens,
      propagateOnRejection: false,
      // The parser has no context to report to: the document is refused by throwing.
      onReject: [
        (_context, error) => {
          throw queryTooComplex(error.message);
        },
      ],
    }),
    maxDepthPlugin({
      n: limits.maxDepth,
      // Introspection is checked like any other query; a fragment spread counts as a level, and
      // graphql-js's standard introspection query (depth about 21 so counted) still passes.
      ignoreIntrospection: false,
      flattenFragments: false,
      propagateOnRejection: false,
      onReject: [report],
    }),
    maxAliasesPlugin({ n: limits.maxAliases, propagateOnRejection: false, onReject: [report] }),
    onlyTheComplexityError,
  ];
}

/**
 * How many requests a GraphQL request counts for: the root fields of the operation it runs,
 * fragments at the root included. A document that does not parse (within the token limit) counts
 * one; GraphQL refuses it without running anything.
 */
export function rootFieldCount(query: unknown, operationName: unknown, maxTokens: number): number {
  if (typeof query !== 'string') return 1;
  let document: DocumentNode;
  try {
    document = parse(query, { noLocation: true, maxTokens });
  } catch {
    return 1;
  }
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation =
    typeof operationName === 'string' ? operations.find((o) => o.name?.value === operationName) : operations.length === 1 ? operations[0] : undefined;
  if (!operation) return 1;
  // Fields with the same response key are merged and run once; a fragment spread twice, once.
  const keys = new Set<string>();
  const spread = new Set<string>();
  const collect = (set: SelectionSetNode): void => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) keys.add((selection.alias ?? selection.name).value);
      else if (selection.kind === Kind.INLINE_FRAGMENT) collect(selection.selectionSet);
      else if (!spread.has(selection.name.value)) {
        spread.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment) collect(fragment.selectionSet);
      }
    }
  };
  collect(operation.selectionSet);
  return Math.max(1, keys.size);
}
